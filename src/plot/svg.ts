/**
 * The one SVG writer: a line chart with a title (wrapped to the frame), axes on round ticks (linear or log, one
 * number format per axis), series that differ in colour and dash, optional ± bands, labelled points placed so that
 * no two labels overlap and none leaves the plot, highlighted points (a diamond) and a legend sized to its labels.
 *
 * Text is measured with DejaVu Sans's advance widths (one of the widest common sans fonts, and the one named first):
 * a browser that falls back to Arial or Helvetica draws narrower text, so the layout holds there too.
 */

export interface Series {
  name: string;
  points: Array<{ x: number; y: number }>;
  /** Default: a colour of the palette and a dash pattern, never the pair of another series. */
  color?: string;
  dash?: string;
  width?: number;
  /** A shaded band around the line (for example ± one sd over seeds), in the series' colour. */
  band?: Array<{ x: number; lo: number; hi: number }>;
  /** A dot at every point (for binned data, where the points are the data). */
  dots?: boolean;
}

/** A labelled point (an LLM at its cost and accuracy). Lower `rank` is labelled first when space is short. */
export interface Marker {
  x: number;
  y: number;
  label: string;
  rank?: number;
}

/** A point drawn as a diamond in a colour, labelled first and listed in the legend (an operating point). */
export interface Highlight {
  x: number;
  y: number;
  label: string;
  legend: string;
  color: string;
}

export interface LineChart {
  title: string;
  /** A smaller grey line under the title: what the chart shows and how to read it. */
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  xLog?: boolean;
  yLog?: boolean;
  width?: number;
  height?: number;
  /** Tick values (default: round values chosen for the data), and their text (default: one decimal format per axis). */
  xTicks?: number[];
  yTicks?: number[];
  xFormat?: (x: number) => string;
  yFormat?: (y: number) => string;
  /** Put before every tick's text (for example "$"). */
  xPrefix?: string;
  /** A fixed range of an axis (default: the data's, widened to round ticks). */
  xRange?: [number, number];
  yRange?: [number, number];
  markers?: Marker[];
  highlights?: Highlight[];
  /** A line of small text under the x axis's label. */
  note?: string;
  /** When some markers' labels found no room: the note saying so (for example where to find the names). */
  unlabelledNote?: (unlabelled: number, markers: number) => string;
}

/** Twelve colours that differ from each other (Tableau 10, black and a dark teal). */
export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#000000', '#005f5f'];
/** Dash patterns (solid first): colour and dash together tell the curves apart, in print too. */
export const DASHES = ['', '8 3', '3 3', '12 3 3 3', '2 4', '6 2 2 2 2 2', '10 5', '1 3', '4 2 8 2'];
export const FONT_FAMILY = 'DejaVu Sans, Bitstream Vera Sans, Verdana, Arial, Helvetica, sans-serif';

/** DejaVu Sans's advance widths of ASCII 32..126, in thousandths of an em. */
const ASCII_WIDTHS = [
  318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636, 636, 636, 636, 636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752, 295,
  295, 656, 557, 863, 748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390, 838, 500, 500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521,
  392, 634, 592, 818, 592, 592, 525, 636, 337, 636, 838,
];
const OTHER_WIDTHS: Record<string, number> = { '±': 838, '…': 1000, '—': 1000, '−': 838, '·': 318, '≤': 838, '≥': 838, '↑': 838, '↓': 838, λ: 592, '%': 950, '◆': 1000 };

/** The width of a text in px at a font size (DejaVu Sans; an unknown character counts as a full em). */
export function textWidth(s: string, size: number): number {
  let w = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    w += c >= 32 && c < 127 ? ASCII_WIDTHS[c - 32] : (OTHER_WIDTHS[ch] ?? 1000);
  }
  return (w / 1000) * size;
}

/** The box of a text as drawn (DejaVu Sans's ascent and descent around the baseline), in px. */
export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}
export const ASCENT = 0.93;
export const DESCENT = 0.24;
export function textBox(x: number, y: number, s: string, size: number, anchor: 'start' | 'middle' | 'end' = 'start'): Box {
  const w = textWidth(s, size);
  const x0 = anchor === 'start' ? x : anchor === 'middle' ? x - w / 2 : x - w;
  return { x0, y0: y - ASCENT * size, x1: x0 + w, y1: y + DESCENT * size };
}
export const overlaps = (a: Box, b: Box, pad = 0) => a.x0 < b.x1 + pad && b.x0 < a.x1 + pad && a.y0 < b.y1 + pad && b.y0 < a.y1 + pad;
const inside = (a: Box, f: Box) => a.x0 >= f.x0 && a.x1 <= f.x1 && a.y0 >= f.y0 && a.y1 <= f.y1;

export function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

/** Round ticks on a linear axis: steps of 1, 2, 2.5 or 5 x 10^k, about `target` of them, covering [lo, hi]. */
export function linearTicks(lo: number, hi: number, target = 6): number[] {
  if (!(hi > lo)) {
    const d = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    return linearTicks(lo - d, hi + d, target);
  }
  const raw = (hi - lo) / Math.max(1, target - 1);
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw * 0.999)!;
  // (0.75 / 0.05 is 14.999999999999998: rounded to 12 digits first)
  const a = Math.floor(Number((lo / step).toPrecision(12)));
  const b = Math.ceil(Number((hi / step).toPrecision(12)));
  // each tick as the decimal of k x step (no 0.30000000000000004)
  const digits = decimalsOf(step);
  return Array.from({ length: b - a + 1 }, (_, i) => Number(((a + i) * step).toFixed(digits)));
}

/** Round ticks on a log axis: 1, 2, 5 x 10^k (only 1 x 10^k over more than two decades), covering [lo, hi]. */
export function logTicks(lo: number, hi: number): number[] {
  if (!(lo > 0) || !(hi > 0)) return [1];
  if (hi <= lo) return logTicks(lo / 2, hi * 2);
  const decades = Math.log10(hi / lo);
  const mult = decades > 2.2 ? [1] : decades > 1 ? [1, 2, 5] : [1, 1.5, 2, 3, 5, 7];
  const all: number[] = [];
  for (let k = Math.floor(Math.log10(lo)) - 1; k <= Math.ceil(Math.log10(hi)) + 1; k++) for (const m of mult) all.push(Number((m * 10 ** k).toPrecision(2)));
  const below = all.filter((v) => v <= lo * (1 + 1e-9));
  const above = all.filter((v) => v >= hi * (1 - 1e-9));
  const a = below[below.length - 1];
  const b = above[0];
  return all.filter((v) => v >= a && v <= b);
}

/** Decimals that write v exactly (to 10 significant digits): 0.25 -> 2, 20 -> 0. */
export function decimalsOf(v: number): number {
  const s = Number(Math.abs(v).toPrecision(10)).toString();
  if (s.includes('e-')) return Number(s.split('e-')[1]) + (s.split('e')[0].split('.')[1]?.length ?? 0);
  return s.split('.')[1]?.length ?? 0;
}

/**
 * One format for all the ticks of an axis, never an exponent: on a linear axis as many decimals as the most
 * precise tick needs (0.70, 0.75, 0.80); on a log axis, whose ticks are 1, 2, 5 x 10^k, each tick's own decimals
 * ($0.0001, $0.0002, $0.001).
 */
export function tickFormat(ticks: number[], prefix = '', log = false): (v: number) => string {
  const d = Math.min(12, Math.max(0, ...ticks.map(decimalsOf)));
  return (v) => `${prefix}${v.toFixed(log ? Math.min(12, decimalsOf(v)) : d)}`;
}

type Placed = { box: Box; x: number; y: number; anchor: 'start' | 'end' | 'middle'; leader?: [number, number, number, number] };

/**
 * Places each label near its point, in the first spot (of several around it, then farther out with a leader line)
 * where it overlaps no label placed before, no point and nothing in `avoid`, inside `frame`. Labels that find no
 * spot are left out (returned as undefined).
 */
export function placeLabels(
  points: Array<{ x: number; y: number; label: string }>,
  size: number,
  frame: Box,
  opts: { avoid?: Box[]; prefer?: Box[]; pointRadius?: number; force?: number } = {},
): Array<Placed | undefined> {
  const pointRadius = opts.pointRadius ?? 3.5;
  const avoid = opts.avoid ?? [];
  const dots = points.map((p) => ({ x0: p.x - pointRadius, y0: p.y - pointRadius, x1: p.x + pointRadius, y1: p.y + pointRadius }));
  const taken: Box[] = [...avoid];
  const spots: Array<[number, number, 'start' | 'end' | 'middle', boolean]> = [];
  for (const r of [1, 2.2, 3.6])
    spots.push(
      [6 * r, 0.35 * size, 'start', r > 1],
      [-6 * r, 0.35 * size, 'end', r > 1],
      [0, -6 * r, 'middle', r > 1],
      [0, 6 * r + ASCENT * size, 'middle', r > 1],
      [5 * r, -5 * r, 'start', r > 1],
      [5 * r, 5 * r + ASCENT * size * 0.8, 'start', r > 1],
      [-5 * r, -5 * r, 'end', r > 1],
      [-5 * r, 5 * r + ASCENT * size * 0.8, 'end', r > 1],
    );
  // `prefer`: boxes a label should rather not cover (the curves): tried first clear of them, then over them
  const passes = [opts.prefer ?? [], []];
  const place = (p: { x: number; y: number; label: string }, i: number, soft: Box[], hard: boolean): Placed | undefined => {
    for (const [dx, dy, anchor, far] of spots) {
      const box = textBox(p.x + dx, p.y + dy, p.label, size, anchor);
      if (!inside(box, frame)) continue;
      if (hard && taken.some((t) => overlaps(box, t, 1))) continue;
      if (hard && dots.some((d, j) => overlaps(box, d, j === i ? 0 : 1))) continue;
      if (soft.some((t) => overlaps(box, t))) continue;
      const leader: Placed['leader'] = far ? [p.x, p.y, anchor === 'start' ? box.x0 - 1 : anchor === 'end' ? box.x1 + 1 : p.x, dy < 0 ? box.y1 : dy > ASCENT * size ? box.y0 : p.y] : undefined;
      return { box, x: p.x + dx, y: p.y + dy, anchor, leader };
    }
    return undefined;
  };
  return points.map((p, i) => {
    // the first `force` labels are always drawn (in their first spot inside the frame, if none is free)
    const got = passes.reduce<Placed | undefined>((g, soft) => g ?? place(p, i, soft, true), undefined) ?? (i < (opts.force ?? 0) ? place(p, i, [], false) : undefined);
    if (got) taken.push(got.box);
    return got;
  });
}

/**
 * An axis's range: out to the round tick beyond each end of the data when that tick is near (within 12 % of the
 * data's range, in log units on a log axis), else 3 % beyond the data's end (a decade of empty plot helps no
 * reader).
 */
export function axisRange(data: [number, number], ticks: number[], log?: boolean): [number, number] {
  const t = log ? Math.log : (v: number) => v;
  const span = t(data[1]) - t(data[0]) || Math.abs(t(data[0])) || 1;
  const below = ticks.filter((v) => v <= data[0]);
  const above = ticks.filter((v) => v >= data[1]);
  const inv = log ? Math.exp : (v: number) => v;
  // else 3 % of room, so that no point sits on the frame
  const lo = below.length && t(data[0]) - t(below[below.length - 1]) <= 0.12 * span ? below[below.length - 1] : inv(t(data[0]) - 0.03 * span);
  const hi = above.length && t(above[0]) - t(data[1]) <= 0.12 * span ? above[0] : inv(t(data[1]) + 0.03 * span);
  if (hi > lo) return [lo, hi];
  return log ? [lo / 2, hi * 2] : [lo - 1, hi + 1];
}

/** Splits a title into lines that fit `width` at `size` (at word boundaries; a word too long is cut with "…"). */
export function wrapText(s: string, size: number, width: number, maxLines = 2): string[] {
  const words = s.split(' ');
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    const next = cur ? `${cur} ${w}` : w;
    if (textWidth(next, size) <= width || !cur) cur = next;
    else {
      lines.push(cur);
      cur = w;
    }
  }
  if (cur) lines.push(cur);
  const out = lines.slice(0, maxLines);
  if (lines.length > maxLines) out[maxLines - 1] = `${out[maxLines - 1]} ${lines.slice(maxLines).join(' ')}`;
  return out.map((l) => {
    if (textWidth(l, size) <= width) return l;
    let t = l;
    while (t.length > 1 && textWidth(`${t}…`, size) > width) t = t.slice(0, -1);
    return `${t}…`;
  });
}

/** The style of each series: its own colour and dash, or the next dash when an earlier series has that pair. */
export function seriesStyles(series: Series[]): Array<{ color: string; dash: string }> {
  const used = new Set<string>();
  return series.map((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const start = s.dash !== undefined ? Math.max(0, DASHES.indexOf(s.dash)) : Math.floor(i / PALETTE.length);
    let dash = s.dash ?? DASHES[start % DASHES.length];
    for (let t = 1; used.has(`${color}|${dash}`) && t <= DASHES.length; t++) dash = DASHES[(start + t) % DASHES.length];
    used.add(`${color}|${dash}`);
    return { color, dash };
  });
}

export function lineChart(c: LineChart): string {
  const W = c.width ?? 960;
  const H = c.height ?? 540;
  const TITLE = 15;
  const SMALL = 12;
  const LABEL = 10;
  const ok = (p: { x: number; y: number }) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!c.xLog || p.x > 0) && (!c.yLog || p.y > 0);
  const pts = [...c.series.flatMap((s) => s.points), ...(c.markers ?? []), ...(c.highlights ?? [])].filter(ok);
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y);
  const range = (v: number[], fixed?: [number, number]): [number, number] => fixed ?? (v.length ? [Math.min(...v), Math.max(...v)] : [0, 1]);
  const xr = range(xs, c.xRange);
  const yr = range(ys, c.yRange);
  const xTicks0 = c.xTicks ?? (c.xLog ? logTicks(xr[0], xr[1]) : linearTicks(xr[0], xr[1], Math.round((W - 400) / 80)));
  const yTicks0 = c.yTicks ?? (c.yLog ? logTicks(yr[0], yr[1]) : linearTicks(yr[0], yr[1], Math.round((H - 150) / 50)));
  const [x0, x1] = c.xRange ?? axisRange(xr, xTicks0, c.xLog);
  const [y0, y1] = c.yRange ?? axisRange(yr, yTicks0, c.yLog);
  const within = (v: number, a: number, b: number) => v >= a - 1e-9 * Math.abs(b - a) && v <= b + 1e-9 * Math.abs(b - a);
  const xTicks = xTicks0.filter((v) => within(v, x0, x1));
  const yTicks = yTicks0.filter((v) => within(v, y0, y1));
  const xf = c.xFormat ?? tickFormat(xTicks, c.xPrefix, c.xLog);
  const yf = c.yFormat ?? tickFormat(yTicks, '', c.yLog);

  // the title, wrapped to the width; the legend's width from its labels
  const titleLines = wrapText(c.title, TITLE, W - 24);
  const subLines = c.subtitle ? wrapText(c.subtitle, SMALL, W - 24) : [];
  const st = seriesStyles(c.series);
  const legend = [...c.series.map((s, i) => ({ name: s.name, ...st[i], width: s.width ?? 2, diamond: false })), ...(c.highlights ?? []).map((h) => ({ name: h.legend, color: h.color, dash: '', width: 2, diamond: true }))];
  const legendW = legend.length ? Math.ceil(Math.max(...legend.map((l) => textWidth(l.name, SMALL)))) + 52 : 0;
  const yTickW = Math.max(...yTicks.map((t) => textWidth(yf(t), SMALL)));
  const m = { l: Math.ceil(yTickW) + 40, r: legendW + 16, t: 18 + titleLines.length * 19 + subLines.length * 16 + 10, b: 58 + (c.note || c.unlabelledNote ? 16 : 0) };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const scale = (v: number, a: number, b: number, log?: boolean) => (log ? Math.log(v / a) / Math.log(b / a || 2) : (v - a) / (b - a || 1));
  const tx = (x: number) => m.l + scale(x, x0, x1, c.xLog) * pw;
  const ty = (y: number) => m.t + (1 - scale(y, y0, y1, c.yLog)) * ph;
  const f1 = (v: number) => v.toFixed(1);
  // every text says what it is (class): title, subtitle, tick-x, tick-y, axis, legend, label, note
  const text = (cls: string, x: number, y: number, s: string, size: number, anchor = 'start', extra = '') =>
    `<text class="${cls}" x="${f1(x)}" y="${f1(y)}" font-size="${size}"${anchor !== 'start' ? ` text-anchor="${anchor}"` : ''}${extra}>${escapeXml(s)}</text>`;

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${FONT_FAMILY}" font-size="${SMALL}">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  ];
  titleLines.forEach((l, i) => out.push(text('title', W / 2, 22 + i * 19, l, TITLE, 'middle')));
  subLines.forEach((l, i) => out.push(text('subtitle', W / 2, 22 + titleLines.length * 19 + i * 16 - 2, l, SMALL, 'middle', ' fill="#555"')));
  out.push(`<rect class="frame" x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  for (const y of yTicks.filter((v) => v >= y0 - 1e-12 && v <= y1 + 1e-12))
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${f1(ty(y))}" y2="${f1(ty(y))}" stroke="#e6e6e6"/>`, text('tick-y', m.l - 8, ty(y) + 4, yf(y), SMALL, 'end'));
  // x tick labels: every one that does not run into the one before (the grid line stays)
  let lastRight = -Infinity;
  for (const x of xTicks.filter((v) => v >= x0 * (1 - 1e-12) && v <= x1 * (1 + 1e-12))) {
    out.push(`<line x1="${f1(tx(x))}" x2="${f1(tx(x))}" y1="${m.t}" y2="${m.t + ph}" stroke="#e6e6e6"/>`);
    // 20 px below the frame: clear of the lowest y tick's text at the corner
    const b = textBox(tx(x), m.t + ph + 20, xf(x), SMALL, 'middle');
    if (b.x0 > lastRight + 6 && b.x0 >= 0 && b.x1 <= W) {
      out.push(text('tick-x', tx(x), m.t + ph + 20, xf(x), SMALL, 'middle'));
      lastRight = b.x1;
    }
  }
  out.push(text('axis', m.l + pw / 2, m.t + ph + 42, c.xLabel, SMALL, 'middle'));
  const yLabel = wrapText(c.yLabel, SMALL, ph)[0];
  out.push(`<text class="axis" transform="translate(16 ${f1(m.t + ph / 2)}) rotate(-90)" font-size="${SMALL}" text-anchor="middle">${escapeXml(yLabel)}</text>`);
  out.push(`<defs><clipPath id="plot"><rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}"/></clipPath></defs>`);

  c.series.forEach((s, i) => {
    const { color } = st[i];
    if (s.band && s.band.length > 1) {
      const band = s.band.filter((b) => (!c.xLog || b.x > 0) && (!c.yLog || b.lo > 0));
      const upper = band.map((b) => `${f1(tx(b.x))},${f1(ty(Math.min(b.hi, y1)))}`);
      const lower = band.map((b) => `${f1(tx(b.x))},${f1(ty(Math.max(b.lo, y0)))}`).reverse();
      out.push(`<polygon class="band" clip-path="url(#plot)" fill="${color}" fill-opacity="0.12" stroke="none" points="${[...upper, ...lower].join(' ')}"/>`);
    }
  });
  c.series.forEach((s, i) => {
    const { color, dash } = st[i];
    const dashAttr = dash ? ` stroke-dasharray="${dash}"` : '';
    const line = s.points.filter(ok).map((p) => `${f1(tx(p.x))},${f1(ty(p.y))}`);
    out.push(`<polyline class="series" clip-path="url(#plot)" fill="none" stroke="${color}" stroke-width="${s.width ?? 2}"${dashAttr} stroke-linejoin="round" points="${line.join(' ')}"/>`);
    if (s.dots) for (const p of s.points.filter(ok)) out.push(`<circle cx="${f1(tx(p.x))}" cy="${f1(ty(p.y))}" r="2.5" fill="${color}"/>`);
  });

  // the legend, right of the plot
  legend.forEach((l, i) => {
    const ly = m.t + 10 + i * 20;
    const lx = m.l + pw + 16;
    if (l.diamond) out.push(diamond(lx + 13, ly, l.color));
    else out.push(`<line class="legend" x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${l.color}" stroke-width="${Math.max(2, l.width)}"${l.dash ? ` stroke-dasharray="${l.dash}"` : ''}/>`);
    out.push(text('legend', lx + 32, ly + 4, l.name, SMALL));
  });

  // points and their labels: highlights first, then markers by rank; a label that finds no room is left out
  const frame: Box = { x0: m.l + 2, y0: m.t + 2, x1: m.l + pw - 2, y1: m.t + ph - 2 };
  const hs = (c.highlights ?? []).filter(ok).map((h) => ({ ...h, px: tx(h.x), py: ty(h.y) }));
  const ms = (c.markers ?? [])
    .filter(ok)
    .map((p, i) => ({ ...p, i, px: tx(p.x), py: ty(p.y) }))
    .sort((a, b) => (a.rank ?? 0) - (b.rank ?? 0) || a.i - b.i);
  for (const p of ms) out.push(`<circle class="marker" cx="${f1(p.px)}" cy="${f1(p.py)}" r="3.5" fill="#222"/>`);
  for (const h of hs) out.push(diamond(h.px, h.py, h.color));
  const all = [...hs.map((h) => ({ x: h.px, y: h.py, label: h.label })), ...ms.map((p) => ({ x: p.px, y: p.py, label: shorten(p.label) }))];
  // the curves, as small boxes along each line: labels go clear of them where they can
  const curves: Box[] = [];
  for (const s of c.series) {
    const ps = s.points.filter(ok).map((p) => [tx(p.x), ty(p.y)]);
    for (let i = 0; i + 1 < ps.length; i++) {
      const [ax, ay] = ps[i];
      const [bx, by] = ps[i + 1];
      const steps = Math.max(1, Math.ceil(Math.hypot(bx - ax, by - ay) / 4));
      for (let t = 0; t <= steps; t++) {
        const x = ax + ((bx - ax) * t) / steps;
        const y = ay + ((by - ay) * t) / steps;
        curves.push({ x0: x - 1.5, y0: y - 1.5, x1: x + 1.5, y1: y + 1.5 });
      }
    }
  }
  const placed = placeLabels(all, LABEL, frame, { prefer: curves, pointRadius: 4.5, force: hs.length });
  placed.forEach((pl, i) => {
    if (!pl) return;
    if (pl.leader) out.push(`<line x1="${f1(pl.leader[0])}" y1="${f1(pl.leader[1])}" x2="${f1(pl.leader[2])}" y2="${f1(pl.leader[3])}" stroke="#999" stroke-width="0.8"/>`);
    const color = i < hs.length ? hs[i].color : '#222';
    out.push(text('label', pl.x, pl.y, all[i].label, LABEL, pl.anchor, ` fill="${color}" stroke="white" stroke-width="3" paint-order="stroke"`));
  });
  const unlabelled = placed.slice(hs.length).filter((p) => !p).length;
  const note = [c.note, unlabelled && c.unlabelledNote ? c.unlabelledNote(unlabelled, ms.length) : undefined].filter(Boolean).join('; ');
  if (note) out.push(text('note', m.l + pw / 2, m.t + ph + 58, wrapText(note, LABEL, W - 20, 1)[0], LABEL, 'middle', ' fill="#555"'));
  out.push('</svg>');
  return out.join('\n');
}

/** A label of at most 26 characters: an "org/" prefix dropped, then cut with "…". */
export function shorten(label: string): string {
  const s = label.includes('/') ? label.slice(label.lastIndexOf('/') + 1) : label;
  return s.length > 26 ? `${s.slice(0, 25)}…` : s;
}

function diamond(x: number, y: number, color: string): string {
  const r = 6;
  return `<polygon class="highlight" points="${(x).toFixed(1)},${(y - r).toFixed(1)} ${(x + r).toFixed(1)},${y.toFixed(1)} ${x.toFixed(1)},${(y + r).toFixed(1)} ${(x - r).toFixed(1)},${y.toFixed(1)}" fill="white" stroke="${color}" stroke-width="2.5"/>`;
}
