// The Pareto front of a search: tokens/s against peak GPU memory, one dot a plan; the cap as a
// line; the selected plan ringed. Clicking a dot selects it.
import { select } from 'd3-selection';
import { scaleLinear } from 'd3-scale';
import { axisBottom, axisLeft } from 'd3-axis';
import { line } from 'd3-shape';
import type { SearchView } from '../explorer-api.ts';

const GiB = 2 ** 30;

export function renderPareto(el: SVGSVGElement, s: SearchView, selected: number, capBytes: number | null, onSelect: (i: number) => void): void {
  const W = el.clientWidth || 520, H = el.clientHeight || 300;
  const m = { l: 64, r: 16, t: 12, b: 40 };
  const svg = select(el);
  svg.selectAll('*').remove();
  svg.attr('viewBox', `0 0 ${W} ${H}`);
  const pts = s.pareto;
  const maxMem = Math.max(...pts.map((p) => p.peak_bytes), capBytes ?? 0) / GiB;
  const x = scaleLinear().domain([0, maxMem * 1.08 || 1]).range([m.l, W - m.r]).nice();
  const y = scaleLinear().domain([0, Math.max(...pts.map((p) => p.tokens_per_s)) * 1.1 || 1]).range([H - m.b, m.t]).nice();
  svg.append('g').attr('transform', `translate(0,${H - m.b})`).call(axisBottom(x).ticks(6));
  svg.append('g').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(5));
  svg.append('text').attr('class', 'axis-label').attr('x', (m.l + W - m.r) / 2).attr('y', H - 6).attr('text-anchor', 'middle').text('peak GPU memory (GiB)');
  svg.append('text').attr('class', 'axis-label').attr('transform', `translate(14,${(H - m.b + m.t) / 2}) rotate(-90)`).attr('text-anchor', 'middle').text('tokens/s');
  if (capBytes !== null) {
    svg.append('line').attr('class', 'cap').attr('x1', x(capBytes / GiB)).attr('x2', x(capBytes / GiB)).attr('y1', m.t).attr('y2', H - m.b);
    svg.append('text').attr('class', 'cap-label').attr('x', x(capBytes / GiB) - 4).attr('y', m.t + 10).attr('text-anchor', 'end').text('cap');
  }
  const stair = line<SearchView['pareto'][number]>().x((p) => x(p.peak_bytes / GiB)).y((p) => y(p.tokens_per_s));
  svg.append('path').attr('class', 'front').attr('d', stair(pts) ?? '');
  svg.append('g').selectAll('circle').data(pts).join('circle')
    .attr('class', (_, i) => `point${i === selected ? ' selected' : ''}${i === s.best ? ' best' : ''}`)
    .attr('data-index', (_, i) => i)
    .attr('cx', (p) => x(p.peak_bytes / GiB)).attr('cy', (p) => y(p.tokens_per_s)).attr('r', (_, i) => (i === selected ? 7 : 5))
    .on('click', (_, p) => onSelect(pts.indexOf(p)))
    .append('title').text((p) => `${p.schedule} ${p.pipelineRanks} ranks${p.dataParallel > 1 ? ` x ${p.dataParallel}` : ''}, ${p.microBatches} x ${p.microBatchSize}${p.recompute ? ', recompute' : ''}\n${p.offload}\n${p.step_s.toFixed(3)} s a step, ${Math.round(p.tokens_per_s)} tokens/s, ${(p.peak_bytes / GiB).toFixed(1)} GiB`);
}
