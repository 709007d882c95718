/** The one SVG writer: a line chart with a title, axes (linear or log), grid, series (bands optional), labelled markers and a legend. */

export interface Series {
  name: string;
  points: Array<{ x: number; y: number }>;
  /** Default: a colour from the palette and a dash pattern of its own (so series differ in print too), width 2. */
  color?: string;
  dash?: string;
  width?: number;
  /** A shaded band around the line (for example ± one sd over seeds), in the series' colour. */
  band?: Array<{ x: number; lo: number; hi: number }>;
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  xLog?: boolean;
  yLog?: boolean;
  width?: number;
  height?: number;
  /** Room on the right for the legend (px). */
  legendWidth?: number;
  /** Grid lines and labels: explicit x values (default: 5 even steps), and formatters. */
  xTicks?: number[];
  xFormat?: (x: number) => string;
  yFormat?: (y: number) => string;
  /** Pad the y range to multiples of this (linear axes; default none). */
  yStep?: number;
  /** Labelled points (for example each LLM at its cost and accuracy). */
  markers?: Array<{ x: number; y: number; label: string }>;
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf'];
/** One dash pattern per series index (solid first): colour and dash together tell the curves apart. */
export const DASHES = ['', '8 3', '3 3', '12 3 3 3', '2 5', '6 2 2 2 2 2', '10 5', '1 3', '4 2 8 2'];

export function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

export function lineChart(c: LineChart): string {
  const W = c.width ?? 900;
  const H = c.height ?? 480;
  const m = { l: 76, r: c.legendWidth ?? 280, t: 40, b: 56 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const pts = [...c.series.flatMap((s) => s.points), ...(c.markers ?? [])].filter((p) => (!c.xLog || p.x > 0) && (!c.yLog || p.y > 0));
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y);
  const x0 = xs.length ? Math.min(...xs) : 0;
  const x1 = xs.length ? Math.max(...xs) : 1;
  let y0 = ys.length ? Math.min(...ys) : 0;
  let y1 = ys.length ? Math.max(...ys) : 1;
  if (c.yStep) {
    y0 = Math.floor(y0 / c.yStep) * c.yStep;
    y1 = Math.ceil(y1 / c.yStep) * c.yStep;
  }
  const scale = (v: number, a: number, b: number, log?: boolean) =>
    log ? Math.log(v / a) / Math.log(b / a || 2) : (v - a) / (b - a || 1);
  const tx = (x: number) => m.l + scale(x, x0, x1, c.xLog) * pw;
  const ty = (y: number) => m.t + (1 - scale(y, y0, y1, c.yLog)) * ph;
  const step = (a: number, b: number, i: number, log?: boolean) => (log ? a * (b / a) ** (i / 5) : a + ((b - a) * i) / 5);
  const xf = c.xFormat ?? ((x: number) => x.toExponential(1));
  const yf = c.yFormat ?? ((y: number) => y.toFixed(2));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.l + pw / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(c.title)}</text>`,
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const y = step(y0, y1, i, c.yLog);
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${ty(y)}" y2="${ty(y)}" stroke="#eee"/>`, `<text x="${m.l - 8}" y="${ty(y) + 4}" text-anchor="end">${yf(y)}</text>`);
  }
  for (const x of c.xTicks ?? [0, 1, 2, 3, 4, 5].map((i) => step(x0, x1, i, c.xLog)))
    out.push(`<line x1="${tx(x)}" x2="${tx(x)}" y1="${m.t}" y2="${m.t + ph}" stroke="#eee"/>`, `<text x="${tx(x)}" y="${m.t + ph + 18}" text-anchor="middle">${xf(x)}</text>`);
  out.push(
    `<text x="${m.l + pw / 2}" y="${H - 14}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`,
    `<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(c.yLabel)}</text>`,
  );
  const okPoint = (p: { x: number; y: number }) => (!c.xLog || p.x > 0) && (!c.yLog || p.y > 0);
  out.push(`<defs><clipPath id="plot"><rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}"/></clipPath></defs>`);
  c.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    // past the palette's length the dash shifts by one, so no two series of a chart share colour and dash
    const dashPattern = s.dash ?? DASHES[(i + Math.floor(i / PALETTE.length)) % DASHES.length];
    const dash = dashPattern ? ` stroke-dasharray="${dashPattern}"` : '';
    if (s.band && s.band.length > 1) {
      const band = s.band.filter((b) => (!c.xLog || b.x > 0) && (!c.yLog || b.lo > 0));
      const upper = band.map((b) => `${tx(b.x).toFixed(1)},${ty(Math.min(b.hi, y1)).toFixed(1)}`);
      const lower = band.map((b) => `${tx(b.x).toFixed(1)},${ty(Math.max(b.lo, y0)).toFixed(1)}`).reverse();
      out.push(`<polygon clip-path="url(#plot)" fill="${color}" fill-opacity="0.10" stroke="none" points="${[...upper, ...lower].join(' ')}"/>`);
    }
    const line = s.points.filter(okPoint).map((p) => `${tx(p.x).toFixed(1)},${ty(p.y).toFixed(1)}`);
    out.push(`<polyline clip-path="url(#plot)" fill="none" stroke="${color}" stroke-width="${s.width ?? 2}"${dash} points="${line.join(' ')}"/>`);
    const ly = m.t + 10 + i * 20;
    out.push(`<line x1="${m.l + pw + 15}" x2="${m.l + pw + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2.5"${dash}/>`);
    out.push(`<text x="${m.l + pw + 46}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  for (const p of (c.markers ?? []).filter(okPoint)) {
    const x = tx(p.x);
    const y = ty(p.y);
    const label = p.label.length > 28 ? `${p.label.slice(0, 27)}…` : p.label;
    out.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3.5" fill="#222"/>`);
    // labels to the left of the right edge's points, so they stay inside the plot
    const right = x > m.l + pw * 0.75;
    out.push(`<text x="${(right ? x - 6 : x + 6).toFixed(1)}" y="${(y - 5).toFixed(1)}" font-size="10" fill="#222" text-anchor="${right ? 'end' : 'start'}">${escapeXml(label)}</text>`);
  }
  out.push('</svg>');
  return out.join('\n');
}
