/** The one SVG writer: a line chart with a title, axes (linear or log), grid, series and a legend. */

export interface Series {
  name: string;
  points: Array<{ x: number; y: number }>;
  /** Default: a colour from the palette, a solid line of width 2. */
  color?: string;
  dash?: string;
  width?: number;
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
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf'];

export function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

export function lineChart(c: LineChart): string {
  const W = c.width ?? 900;
  const H = c.height ?? 480;
  const m = { l: 76, r: c.legendWidth ?? 280, t: 40, b: 56 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const pts = c.series.flatMap((s) => s.points).filter((p) => (!c.xLog || p.x > 0) && (!c.yLog || p.y > 0));
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
  c.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    const line = s.points
      .filter((p) => (!c.xLog || p.x > 0) && (!c.yLog || p.y > 0))
      .map((p) => `${tx(p.x).toFixed(1)},${ty(p.y).toFixed(1)}`);
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="${s.width ?? 2}"${dash} points="${line.join(' ')}"/>`);
    const ly = m.t + 10 + i * 20;
    out.push(`<line x1="${m.l + pw + 15}" x2="${m.l + pw + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2.5"${dash}/>`);
    out.push(`<text x="${m.l + pw + 46}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
