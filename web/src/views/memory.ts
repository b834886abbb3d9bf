// Memory over the step: one line per device (all classes together), with the cap.
import { select } from 'd3-selection';
import { scaleLinear } from 'd3-scale';
import { axisBottom, axisLeft } from 'd3-axis';
import { line, curveStepAfter } from 'd3-shape';
import type { MemoryCounter, MemoryPoint } from '../trace-model.ts';
import { SERIES } from './colors.ts';

const GiB = 2 ** 30;

export function renderMemory(el: SVGSVGElement, series: MemoryCounter[], start_us: number, end_us: number, capBytes: number | null): void {
  const W = el.clientWidth || 520, H = el.clientHeight || 260;
  const longest = Math.max(0, ...series.map((s) => s.process.length));
  const m = { l: 56, r: Math.min(320, 70 + 6.5 * longest), t: 12, b: 32 };
  const svg = select(el);
  svg.selectAll('*').remove();
  svg.attr('viewBox', `0 0 ${W} ${H}`);
  const top = Math.max(capBytes ?? 0, ...series.map((s) => s.peak_bytes)) / GiB;
  const x = scaleLinear().domain([start_us / 1e3, Math.max(end_us, start_us + 1) / 1e3]).range([m.l, W - m.r]);
  const y = scaleLinear().domain([0, top * 1.08 || 1]).range([H - m.b, m.t]).nice();
  svg.append('g').attr('transform', `translate(0,${H - m.b})`).call(axisBottom(x).ticks(6).tickFormat((v) => `${v} ms`));
  svg.append('g').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(5).tickFormat((v) => `${v} GiB`));
  if (capBytes !== null) svg.append('line').attr('class', 'cap').attr('x1', m.l).attr('x2', W - m.r).attr('y1', y(capBytes / GiB)).attr('y2', y(capBytes / GiB));
  const path = line<MemoryPoint>().x((p) => x(p.t_us / 1e3)).y((p) => y(p.bytes / GiB)).curve(curveStepAfter);
  series.forEach((s, i) => {
    const c = SERIES[i % SERIES.length]!;
    svg.append('path').attr('class', 'mem-line').attr('stroke', c).attr('d', path(s.points) ?? '');
    svg.append('text').attr('class', 'legend').attr('x', W - m.r + 6).attr('y', m.t + 12 + i * 16).attr('fill', c).text(`${s.process} ${(s.peak_bytes / GiB).toFixed(1)} GiB`);
  });
}
