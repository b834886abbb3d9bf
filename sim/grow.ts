// Growable typed-array lists (the simulator's graph tables, the lowering's reused scratch lists):
// `a` holds the elements [0, n); push doubles the storage when full. Callers may reset n to reuse.
export class GrowI32 {
  a: Int32Array;
  n = 0;
  constructor(cap = 64) { this.a = new Int32Array(cap); }
  push(x: number): void {
    if (this.n === this.a.length) { const b = new Int32Array(this.a.length * 2); b.set(this.a); this.a = b; }
    this.a[this.n++] = x;
  }
}

export class GrowF64 {
  a: Float64Array;
  n = 0;
  constructor(cap = 64) { this.a = new Float64Array(cap); }
  push(x: number): void {
    if (this.n === this.a.length) { const b = new Float64Array(this.a.length * 2); b.set(this.a); this.a = b; }
    this.a[this.n++] = x;
  }
}
