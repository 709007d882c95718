/** Writing an evaluation: report.json, report.md (tables) and an SVG of the deferral curves. */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Report } from './protocol.js';

const fmt = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const pm = (s: { mean: number; sd: number }, d = 3) => `${fmt(s.mean, d)} ± ${fmt(s.sd, d)}`;

export function markdownTable(r: Report): string {
  const rows = Object.entries(r.methods).sort((a, b) => b[1].audc.mean - a[1].audc.mean);
  const lines = [
    '| method | area (AUDC) ↑ | QNC ↓ | peak accuracy | AIQ |',
    '|---|---|---|---|---|',
    ...rows.map(([name, m]) => {
      const qnc = m.qnc.reached === 0 ? 'not reached' : `${fmt(m.qnc.mean * 100, 1)} %${m.qnc.reached < m.qnc.of ? ` (reached in ${m.qnc.reached}/${m.qnc.of})` : ''}`;
      return `| ${name} | ${pm(m.audc, 4)} | ${qnc} | ${pm(m.peak_accuracy)} | ${pm(m.aiq, 4)} |`;
    }),
  ];
  return lines.join('\n');
}

export function labelEfficiencyTable(r: Report): string {
  const sizes = r.label_efficiency.val_prompts;
  const lines = [`| method | ${sizes.map((v) => `${v} prompts`).join(' | ')} |`, `|---|${sizes.map(() => '---').join('|')}|`];
  for (const [name, rows] of Object.entries(r.label_efficiency.methods)) lines.push(`| ${name} | ${rows.map((x) => fmt(x.audc.mean, 4)).join(' | ')} |`);
  return lines.join('\n');
}

export function markdownReport(r: Report, title: string): string {
  const s = r.settings as any;
  return [
    `# ${title}`,
    '',
    `${s.seeds} seeds; ${s.llms_with_complete_outcomes} LLMs with complete outcomes, ${Math.round(s.unseen_fraction * 100)} % unseen per seed; ` +
      `prompts: ${s.split_sizes.train} train / ${s.split_sizes.val} validation / ${s.split_sizes.test} test. Mean ± sd over seeds. ` +
      'Area: mean quality over the unseen LLMs\' cost range (non-decreasing curve). QNC: cost to match the most accurate unseen LLM, as a share of its cost.',
    '',
    markdownTable(r),
    '',
    r.label_efficiency.val_prompts.length > 1 ? `## Label efficiency (area by validation prompts per unseen LLM)\n\n${labelEfficiencyTable(r)}\n` : '',
  ].join('\n');
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf'];

/** Deferral curves (mean quality against mean cost per query) of every method, one SVG. */
export function deferralSvg(r: Report, title: string, logCost = false): string {
  const W = 900;
  const H = 480;
  const m = { l: 70, r: 300, t: 40, b: 60 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = Object.values(r.methods).flatMap((x) => x.curve);
  const xs = all.map((p) => p.cost).filter((c) => (logCost ? c > 0 : true));
  const ys = all.map((p) => p.quality);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const y0 = Math.floor(Math.min(...ys) * 20) / 20;
  const y1 = Math.ceil(Math.max(...ys) * 20) / 20;
  const tx = (c: number) => m.l + (logCost ? Math.log(c / x0) / Math.log(x1 / x0 || 2) : (c - x0) / (x1 - x0 || 1)) * pw;
  const ty = (q: number) => m.t + (1 - (q - y0) / (y1 - y0 || 1)) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.l + pw / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`,
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const q = y0 + ((y1 - y0) * i) / 5;
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${ty(q)}" y2="${ty(q)}" stroke="#eee"/>`, `<text x="${m.l - 8}" y="${ty(q) + 4}" text-anchor="end">${q.toFixed(2)}</text>`);
    const c = logCost ? x0 * (x1 / x0) ** (i / 5) : x0 + ((x1 - x0) * i) / 5;
    out.push(`<line x1="${tx(c)}" x2="${tx(c)}" y1="${m.t}" y2="${m.t + ph}" stroke="#eee"/>`, `<text x="${tx(c)}" y="${m.t + ph + 18}" text-anchor="middle">${c.toExponential(1)}</text>`);
  }
  out.push(
    `<text x="${m.l + pw / 2}" y="${H - 15}" text-anchor="middle">mean cost per query${logCost ? ' (log scale)' : ''}</text>`,
    `<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">mean quality (accuracy)</text>`,
  );
  Object.entries(r.methods).forEach(([name, meth], i) => {
    const pts = meth.curve.filter((p) => !logCost || p.cost > 0).map((p) => `${tx(p.cost).toFixed(1)},${ty(p.quality).toFixed(1)}`);
    const color = COLORS[i % COLORS.length];
    const dash = name === 'oracle' ? ' stroke-dasharray="4 3"' : name.startsWith('uniroute') ? '' : ' stroke-dasharray="8 3"';
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="${name.startsWith('uniroute') ? 2.5 : 1.5}"${dash} points="${pts.join(' ')}"/>`);
    const ly = m.t + 10 + i * 20;
    out.push(`<line x1="${m.l + pw + 15}" x2="${m.l + pw + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2.5"${dash}/>`);
    out.push(`<text x="${m.l + pw + 46}" y="${ly + 4}">${escapeXml(name)} (${meth.audc.mean.toFixed(3)})</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

export async function writeReport(dir: string, r: Report, title: string, logCost = false): Promise<string[]> {
  await fs.mkdir(dir, { recursive: true });
  const files = [join(dir, 'report.json'), join(dir, 'report.md'), join(dir, 'deferral.svg')];
  await fs.writeFile(files[0], JSON.stringify(r, null, 1));
  await fs.writeFile(files[1], markdownReport(r, title));
  await fs.writeFile(files[2], deferralSvg(r, title, logCost));
  return files;
}
