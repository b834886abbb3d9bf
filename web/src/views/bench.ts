// A committed bench result: predicted against measured step time, one dot a plan, the y = x line
// and the CI bound around it (dots outside it in red); the table beside it has the numbers.
import { select } from 'd3-selection';
import { scaleLinear } from 'd3-scale';
import { axisBottom, axisLeft } from 'd3-axis';
import type { BenchView } from '../explorer-api.ts';

export function renderBench(el: SVGSVGElement, b: BenchView): void {
  const W = el.clientWidth || 420, H = el.clientHeight || 360;
  const m = { l: 56, r: 16, t: 12, b: 40 };
  const svg = select(el);
  svg.selectAll('*').remove();
  svg.attr('viewBox', `0 0 ${W} ${H}`);
  const runs = b.evaluation.runs;
  const top = Math.max(...runs.flatMap((r) => [r.step.predicted, r.step.measured])) * 1.1;
  const d = scaleLinear().domain([0, top]).nice().domain()[1]!;
  const x = scaleLinear().domain([0, d]).range([m.l, W - m.r]);
  const y = scaleLinear().domain([0, d]).range([H - m.b, m.t]);
  svg.append('clipPath').attr('id', 'bench-clip').append('rect').attr('x', m.l).attr('y', m.t).attr('width', W - m.r - m.l).attr('height', H - m.b - m.t);
  svg.append('g').attr('transform', `translate(0,${H - m.b})`).call(axisBottom(x).ticks(6).tickFormat((v) => `${v} s`));
  svg.append('g').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(6).tickFormat((v) => `${v} s`));
  svg.append('text').attr('class', 'axis-label').attr('x', (m.l + W - m.r) / 2).attr('y', H - 6).attr('text-anchor', 'middle').text('measured step');
  svg.append('text').attr('class', 'axis-label').attr('transform', `translate(14,${(H - m.b + m.t) / 2}) rotate(-90)`).attr('text-anchor', 'middle').text('predicted step');
  const k = b.bounds.step;
  svg.append('path').attr('class', 'band').attr('clip-path', 'url(#bench-clip)').attr('d', `M${x(0)},${y(0)} L${x(d)},${y(d * (1 + k))} L${x(d)},${y(d * (1 - k))} Z`);
  svg.append('line').attr('class', 'diag').attr('x1', x(0)).attr('y1', y(0)).attr('x2', x(d)).attr('y2', y(d));
  svg.append('g').selectAll('circle').data(runs).join('circle')
    .attr('class', (r) => `bench-point${Math.abs(r.step.error) > k ? ' out' : ''}`)
    .attr('cx', (r) => x(r.step.measured)).attr('cy', (r) => y(r.step.predicted)).attr('r', 4.5)
    .append('title').text((r) => `${r.label}\n${r.step.predicted.toFixed(4)} s predicted, ${r.step.measured.toFixed(4)} s measured (${(r.step.error * 100).toFixed(1)}%)`);
}
