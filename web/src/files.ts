// Reading what the user opens (or the bundled example): JSON, or gzip-compressed JSON (the
// bench keeps its traces as .json.gz), told apart by the gzip magic bytes, not the name.
export async function jsonOf(bytes: ArrayBuffer, source: string): Promise<unknown> {
  let buf = bytes;
  const head = new Uint8Array(buf, 0, Math.min(2, buf.byteLength));
  if (head[0] === 0x1f && head[1] === 0x8b) {
    const stream = new Blob([buf]).stream().pipeThrough(new DecompressionStream('gzip'));
    buf = await new Response(stream).arrayBuffer();
  }
  try {
    return JSON.parse(new TextDecoder().decode(buf));
  } catch (e) {
    throw new Error(`${source}: not JSON (${(e as Error).message}); open a plan, a trace or a hardware profile as written by mmoc`);
  }
}

export async function readFile(f: File): Promise<unknown> {
  return jsonOf(await f.arrayBuffer(), f.name);
}

export async function fetchJson(url: string, source: string): Promise<unknown> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${source}: ${r.status} ${r.statusText}`);
  return jsonOf(await r.arrayBuffer(), source);
}
