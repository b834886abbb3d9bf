// A step's timeline: one row per (device, stream / lane), one rectangle per task, colored by
// instruction class; drag or wheel to zoom the time axis. Hover for the task.
import { select } from 'd3-selection';
import { scaleLinear } from 'd3-scale';
import { axisTop } from 'd3-axis';
import { zoom, type ZoomTransform } from 'd3-zoom';
import type { TraceModel } from '../trace-model.ts';
import { opColor } from './colors.ts';

const ROW = 18, TOP = 24;
/** Label column width (px) for the longest lane name, at ~6.5 px a character of the 11 px font. */
const labelWidth = (t: TraceModel) => Math.min(380, Math.max(140, 12 + 6.5 * Math.max(0, ...t.lanes.map((l) => `${l.process} · ${l.thread}`.length))));

export function renderTimeline(el: SVGSVGElement, t: TraceModel): void {
  const W = el.clientWidth || 900;
  const LABEL = labelWidth(t);
  const H = TOP + t.lanes.length * ROW + 8;
  const svg = select(el);
  svg.selectAll('*').remove();
  svg.attr('viewBox', `0 0 ${W} ${H}`).attr('height', H);
  const x0 = scaleLinear().domain([t.start_us / 1e3, t.end_us / 1e3]).range([LABEL, W - 8]);
  const labels = svg.append('g');
  labels.selectAll('text').data(t.lanes).join('text').attr('class', 'lane-label')
    .attr('x', LABEL - 6).attr('y', (_, i) => TOP + i * ROW + ROW * 0.7).attr('text-anchor', 'end')
    .text((l) => `${l.process} · ${l.thread}`);
  svg.append('clipPath').attr('id', 'tl-clip').append('rect').attr('x', LABEL).attr('y', 0).attr('width', W - LABEL - 8).attr('height', H);
  const body = svg.append('g').attr('clip-path', 'url(#tl-clip)');
  const axis = svg.append('g').attr('class', 'time-axis').attr('transform', `translate(0,${TOP - 4})`);
  const rows = body.selectAll('g').data(t.lanes).join('g').attr('transform', (_, i) => `translate(0,${TOP + i * ROW})`);
  const rects = rows.selectAll('rect').data((l) => l.slices).join('rect').attr('class', 'slice')
    .attr('y', 1).attr('height', ROW - 3).attr('fill', (s) => opColor(s.op));
  rects.append('title').text((s) => `${s.name}\n${s.op}${s.rank !== undefined ? ` · rank ${s.rank}` : ''}${s.pc !== undefined ? ` · pc ${s.pc}` : ''}${s.mb !== undefined ? ` · mb ${s.mb}` : ''}${s.layer !== undefined ? ` · layer ${s.layer}` : ''}\n${(s.dur_us / 1e3).toFixed(3)} ms at ${(s.start_us / 1e3).toFixed(3)} ms`);
  const draw = (tr: ZoomTransform | null) => {
    const x = tr ? tr.rescaleX(x0) : x0;
    axis.call(axisTop(x).ticks(8).tickFormat((v) => `${v} ms`));
    rects.attr('x', (s) => x(s.start_us / 1e3)).attr('width', (s) => Math.max(0.5, x((s.start_us + s.dur_us) / 1e3) - x(s.start_us / 1e3)));
  };
  draw(null);
  svg.call(zoom<SVGSVGElement, unknown>().scaleExtent([1, 500]).translateExtent([[LABEL, 0], [W - 8, H]]).extent([[LABEL, 0], [W - 8, H]]).on('zoom', (e) => draw(e.transform)));
}
