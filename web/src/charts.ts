// Live line charts on canvas, hand-drawn: one chart holds a few series of (time, value) points, the last
// MAX_POINTS of each, and redraws itself whole at each new sample. The canvas says how many points it plotted
// in its data-points attribute (what the browser tests wait for) and what it shows in its aria-label.

import { el } from './common.js';

const MAX_POINTS = 150;
/** the series' colours; style.css has the same for the legend (.series-N) */
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea'];

export interface SeriesSpec {
  label: string;
}

interface Point {
  t: number;
  v: number;
}

/** 1234567 → '1.23M'; small values keep two decimals. */
export function formatNumber(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(2)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  return v.toFixed(2);
}

export class LineChart {
  readonly element: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly legend: HTMLElement;
  private readonly note: HTMLElement;
  private readonly series: Point[][];

  constructor(
    readonly title: string,
    readonly unit: string,
    private readonly specs: SeriesSpec[],
  ) {
    this.series = specs.map(() => []);
    this.canvas = el('canvas', {
      width: 360,
      height: 140,
      role: 'img',
      'aria-label': title,
      'data-points': 0,
    });
    this.legend = el('div', { class: 'legend' });
    this.note = el('p', { class: 'chart-note' });
    this.element = el(
      'figure',
      { class: 'chart' },
      el('figcaption', {}, title, unit ? el('span', { class: 'unit' }, ` (${unit})`) : null),
      this.canvas,
      this.legend,
      this.note,
    );
    this.draw();
  }

  /** Adds one sample per series at `t` (ms); null: no value this time (no point, no line through it). */
  add(t: number, values: Array<number | null>): void {
    values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      const s = this.series[i];
      s.push({ t, v });
      if (s.length > MAX_POINTS) s.shift();
    });
    this.draw();
  }

  /** A line under the chart ('metrics unavailable'); '' clears it. */
  setNote(text: string): void {
    this.note.textContent = text;
  }

  private draw(): void {
    const c = this.canvas;
    const ctx = c.getContext('2d');
    if (!ctx) return;
    const w = c.width;
    const h = c.height;
    const pad = { left: 44, right: 8, top: 8, bottom: 18 };
    ctx.clearRect(0, 0, w, h);
    ctx.font = '10px system-ui, sans-serif';
    const all = this.series.flat();
    let max = 0;
    for (const p of all) max = Math.max(max, p.v);
    if (max === 0) max = 1;
    const t0 = all.length ? Math.min(...all.map((p) => p.t)) : 0;
    const t1 = all.length ? Math.max(...all.map((p) => p.t)) : 1;
    const span = Math.max(t1 - t0, 1);
    const x = (t: number): number => pad.left + ((t - t0) / span) * (w - pad.left - pad.right);
    const y = (v: number): number => h - pad.bottom - (v / max) * (h - pad.top - pad.bottom);
    // axes and the top value
    ctx.strokeStyle = '#cbd5e1';
    ctx.fillStyle = '#475569';
    ctx.beginPath();
    ctx.moveTo(pad.left, pad.top);
    ctx.lineTo(pad.left, h - pad.bottom);
    ctx.lineTo(w - pad.right, h - pad.bottom);
    ctx.stroke();
    ctx.textAlign = 'right';
    ctx.fillText(formatNumber(max), pad.left - 4, pad.top + 8);
    ctx.fillText('0', pad.left - 4, h - pad.bottom);
    ctx.textAlign = 'left';
    ctx.fillText(all.length ? `${Math.round(span / 1000)} s` : 'waiting for data', pad.left + 4, h - 4);
    let plotted = 0;
    this.series.forEach((points, i) => {
      const color = COLORS[i % COLORS.length];
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      points.forEach((p, j) => {
        if (j === 0) ctx.moveTo(x(p.t), y(p.v));
        else ctx.lineTo(x(p.t), y(p.v));
      });
      ctx.stroke();
      for (const p of points) ctx.fillRect(x(p.t) - 1.5, y(p.v) - 1.5, 3, 3);
      plotted += points.length;
    });
    c.dataset.points = String(plotted);
    this.legend.replaceChildren(
      ...this.specs.map((s, i) => {
        const last = this.series[i].at(-1);
        return el(
          'span',
          { class: 'legend-item' },
          // (a class, not a style attribute: the listener's Content-Security-Policy refuses inline styles)
          el('span', { class: `swatch series-${i % COLORS.length}` }),
          `${s.label}: ${last ? formatNumber(last.v) : '–'}`,
        );
      }),
    );
  }
}
