/** Writing an evaluation: report.json, report.md (tables) and an SVG of the deferral curves. */
import { lineChart } from '../plot/svg.js';
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

/** The default operating point's line: its cost relative to λ = 0 and its accuracy difference, on test prompts. */
export function operatingPointLine(r: Report): string {
  const o = r.operating_point;
  if (!o) return '';
  return (
    `Default operating point (uniroute-kmeans, chosen on validation prompts): on test prompts it costs ` +
    `${(100 * o.cost_ratio.mean).toFixed(1)} % ± ${(100 * o.cost_ratio.sd).toFixed(1)} of λ = 0's cost, at ` +
    `${(100 * o.accuracy_diff.mean).toFixed(2)} ± ${(100 * o.accuracy_diff.sd).toFixed(2)} points of accuracy.`
  );
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
    operatingPointLine(r),
    '',
    r.label_efficiency.val_prompts.length > 1 ? `## Label efficiency (area by validation prompts per unseen LLM)\n\n${labelEfficiencyTable(r)}\n` : '',
  ].join('\n');
}

/** Deferral curves (mean quality against mean cost per query) of every method, one SVG. */
export function deferralSvg(r: Report, title: string, logCost = false): string {
  return lineChart({
    title,
    xLabel: `mean cost per query${logCost ? ' (log scale)' : ''}`,
    yLabel: 'mean quality (accuracy)',
    xLog: logCost,
    yStep: 0.05,
    legendWidth: 300,
    series: Object.entries(r.methods).map(([name, meth]) => ({
      name: `${name} (${meth.audc.mean.toFixed(3)})`,
      points: meth.curve.map((p) => ({ x: p.cost, y: p.quality })),
      dash: name === 'oracle' ? '4 3' : name.startsWith('uniroute') ? undefined : '8 3',
      width: name.startsWith('uniroute') ? 2.5 : 1.5,
    })),
  });
}

export async function writeReport(dir: string, r: Report, title: string, logCost = false): Promise<string[]> {
  await fs.mkdir(dir, { recursive: true });
  const files = [join(dir, 'report.json'), join(dir, 'report.md'), join(dir, 'deferral.svg')];
  await fs.writeFile(files[0], JSON.stringify(r, null, 1));
  await fs.writeFile(files[1], markdownReport(r, title));
  await fs.writeFile(files[2], deferralSvg(r, title, logCost));
  return files;
}
