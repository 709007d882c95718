/** Writing an evaluation: report.json, report.md (tables), report.html (plots and tables), the deferral curves and the label-efficiency sweep as SVG. */
import { escapeXml as escapeHtml, lineChart } from '../plot/svg.js';
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

/** Calibration: the share of cells whose observed test error falls in the 95 % interval, by validation size. */
export function calibrationTable(r: Report): string {
  const c = r.calibration;
  if (!c) return '';
  const sizes = Object.keys(c.coverage95).map(Number).sort((a, b) => a - b);
  return [
    `| validation prompts per unseen LLM | ${sizes.join(' | ')} |`,
    `|---|${sizes.map(() => '---').join('|')}|`,
    `| 95 % predictive interval covers the test error (share of cells) | ${sizes.map((v) => fmt(c.coverage95[v], 3)).join(' | ')} |`,
    `| 95 % interval of the rate covers it | ${sizes.map((v) => fmt(c.coverage95_rate[v], 3)).join(' | ')} |`,
    `| (LLM, cluster) cells scored | ${sizes.map((v) => String(c.cells[v])).join(' | ')} |`,
  ].join('\n');
}

/** Reliability: predicted error against observed test error, cells binned by prediction, one series per validation size. */
export function reliabilitySvg(r: Report, title: string): string {
  const c = r.calibration!;
  const sizes = Object.keys(c.reliability).map(Number).sort((a, b) => a - b);
  return lineChart({
    title: `${title}: reliability of the unseen LLMs' predicted errors`,
    xLabel: "predicted error of an (LLM, cluster) cell (posterior mean)",
    yLabel: 'observed error on its test prompts',
    xFormat: (x) => x.toFixed(1),
    yFormat: (y) => y.toFixed(1),
    xTicks: [0, 0.2, 0.4, 0.6, 0.8, 1],
    legendWidth: 260,
    series: [
      { name: 'perfect calibration', points: [{ x: 0, y: 0 }, { x: 1, y: 1 }], color: '#7f7f7f', dash: '4 4', width: 1 },
      ...sizes.map((v) => ({ name: `${v} validation prompts`, points: c.reliability[v].map((b) => ({ x: b.predicted, y: b.observed })) })),
    ],
  });
}

/** Online learning: the cumulative regret against the router that knows every validation label, per exploration rate. */
export function onlineTable(r: Report): string {
  const o = r.online;
  if (!o) return '';
  const rows = Object.entries(o.rates).sort((a, b) => Number(a[0]) - Number(b[0]));
  return [
    `Each unseen LLM starts from ${o.start_labels} validation labels; the test prompts are replayed as traffic at λ = ${fmt(o.lambda.mean, 4)} (the reference's default point) and each decision's true outcome is fed back. ` +
      `Regret: the reference's (quality − λ·cost) minus the online router's, summed over the stream (mean ± sd over seeds). Reference: quality ${pm(o.reference.quality)}, cost ${o.reference.cost.mean.toExponential(3)}.`,
    '',
    '| exploration | cumulative regret ↓ | regret per prompt | quality | cost | explored prompts |',
    '|---|---|---|---|---|---|',
    ...rows.map(([rate, x]) => `| ${Number(rate) === 0 ? 'none (greedy)' : `${Math.round(Number(rate) * 100)} % Thompson`} | ${pm(x.final_regret, 2)} | ${pm(x.regret_per_prompt, 4)} | ${pm(x.quality)} | ${x.cost.mean.toExponential(3)} | ${fmt(x.explored.mean, 0)} |`),
  ].join('\n');
}

export function onlineSvg(r: Report, title: string): string {
  const o = r.online!;
  return lineChart({
    title: `${title}: learning from traffic (each unseen LLM starts from ${o.start_labels} labels)`,
    xLabel: 'prompts served',
    yLabel: 'cumulative regret (vs all validation labels)',
    xFormat: (x) => String(Math.round(x)),
    yFormat: (y) => y.toFixed(1),
    legendWidth: 240,
    series: Object.entries(o.rates)
      .sort((a, b) => Number(a[0]) - Number(b[0]))
      .map(([rate, x]) => ({
        name: Number(rate) === 0 ? 'greedy (no exploration)' : `${Math.round(Number(rate) * 100)} % Thompson`,
        points: x.curve.map((p) => ({ x: p.prompts, y: p.regret })),
        band: x.curve.map((p) => ({ x: p.prompts, lo: p.regret - p.sd, hi: p.regret + p.sd })),
      })),
  });
}

/** The default operating point's line: its cost relative to λ = 0 and its accuracy difference, on test prompts. */
export function operatingPointLine(r: Report): string {
  const o = r.operating_point;
  if (!o) return '';
  return (
    `Default operating point (uniroute-kmeans, the pool's operating point from its posterior on kept train prompts): on test prompts it costs ` +
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
    ...qncSentences(r).map((q) => `- ${q}`),
    '',
    operatingPointLine(r),
    '',
    r.label_efficiency.val_prompts.length > 1 ? `## Label efficiency (area by validation prompts per unseen LLM)\n\n${labelEfficiencyTable(r)}\n` : '',
    r.calibration ? `## Calibration of the posteriors (cells with >= ${r.calibration.min_test_prompts} test prompts)\n\n${calibrationTable(r)}\n` : '',
    r.online ? `## Learning from traffic\n\n${onlineTable(r)}\n` : '',
  ].join('\n');
}

/** QNC as sentences: where each method reaches the most accurate unseen LLM's test accuracy, if it does. */
export function qncSentences(r: Report): string[] {
  return Object.entries(r.methods)
    .sort((a, b) => b[1].audc.mean - a[1].audc.mean)
    .map(([name, m]) =>
      m.qnc.reached === 0
        ? `${name} never reaches the accuracy of the most accurate unseen LLM.`
        : `${name} reaches the accuracy of the most accurate unseen LLM at ${fmt(m.qnc.mean * 100, 0)} % of that LLM's cost` +
          (m.qnc.reached < m.qnc.of ? ` (in ${m.qnc.reached} of ${m.qnc.of} seeds; in the others it never does).` : ` (every seed).`),
    );
}

const BANDED = new Set(['uniroute-kmeans', 'knn', 'zero-router']);

const usd = (x: number) => (x >= 0.01 ? `$${x.toFixed(2)}` : x >= 1e-4 ? `$${x.toPrecision(2)}` : `$${x.toExponential(0)}`);

/**
 * Deferral curves of every method: mean quality against mean cost per query (USD, log scale by default), bands of
 * ± one sd over seeds for UniRoute (K-means), K-NN and ZeroRouter, and each unseen LLM as a labelled point (its test
 * accuracy, averaged over the seeds in which it was unseen).
 */
export function deferralSvg(r: Report, title: string, logCost = true): string {
  return lineChart({
    title,
    xLabel: `mean cost per query (USD${logCost ? ', log scale' : ''})`,
    yLabel: 'mean accuracy on test prompts',
    xLog: logCost,
    xFormat: usd,
    yStep: 0.05,
    legendWidth: 320,
    series: Object.entries(r.methods)
      .sort((a, b) => b[1].audc.mean - a[1].audc.mean)
      .map(([name, meth]) => ({
        name: `${name} (area ${meth.audc.mean.toFixed(3)})`,
        points: meth.curve.map((p) => ({ x: p.cost, y: p.quality })),
        // bands for the comparison that matters (UniRoute against the two strongest simple baselines): nine
        // overlapping bands of per-seed spread hide the curves
        band: BANDED.has(name) ? meth.curve.map((p) => ({ x: p.cost, lo: p.quality - (p.sd ?? 0), hi: p.quality + (p.sd ?? 0) })) : undefined,
        width: name.startsWith('uniroute') ? 2.5 : 1.5,
      })),
    markers: (r.llms ?? []).map((l) => ({ x: l.cost, y: l.accuracy, label: l.name })),
  });
}

/** Label efficiency: area against validation prompts per unseen LLM (log scale), with the same ± one sd bands. */
export function labelEfficiencySvg(r: Report, title: string): string {
  const sizes = r.label_efficiency.val_prompts;
  return lineChart({
    title: `${title}: label efficiency`,
    xLabel: 'validation prompts per unseen LLM (log scale)',
    yLabel: 'area under the deferral curve',
    xLog: true,
    xTicks: sizes,
    xFormat: (x) => String(Math.round(x)),
    yFormat: (y) => y.toFixed(3),
    legendWidth: 300,
    series: Object.entries(r.label_efficiency.methods)
      .filter(([name]) => name !== 'oracle')
      .map(([name, rows]) => ({
        name,
        points: rows.map((x) => ({ x: x.val_prompts, y: x.audc.mean })),
        band: BANDED.has(name) ? rows.map((x) => ({ x: x.val_prompts, lo: x.audc.mean - x.audc.sd, hi: x.audc.mean + x.audc.sd })) : undefined,
        width: name.startsWith('uniroute') ? 2.5 : 1.5,
      })),
  });
}

/** A markdown table (as markdownTable writes them) as an HTML table. */
function htmlTable(md: string): string {
  const rows = md.trim().split('\n').filter((l, i) => i !== 1);
  const cells = (l: string) => l.replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => escapeHtml(c.trim()));
  const [head, ...body] = rows;
  return `<table><thead><tr>${cells(head).map((c) => `<th>${c}</th>`).join('')}</tr></thead><tbody>${body
    .map((l) => `<tr>${cells(l).map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

/** report.html: the plots and the tables on one page (no scripts, no external files). */
export function htmlReport(r: Report, title: string, logCost = true): string {
  const s = r.settings as any;
  const le = r.label_efficiency.val_prompts.length > 1;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}</style>
</head><body>
<h1>${escapeHtml(title)}</h1>
<p>${s.seeds} seeds; ${s.llms_with_complete_outcomes} LLMs with complete outcomes, ${Math.round(s.unseen_fraction * 100)} % unseen per seed; prompts: ${s.split_sizes.train} train / ${s.split_sizes.val} validation / ${s.split_sizes.test} test. Mean ± sd over seeds. Area: mean accuracy over the unseen LLMs' cost range.</p>
${deferralSvg(r, title, logCost)}
<h2>Methods</h2>
${htmlTable(markdownTable(r))}
<ul>${qncSentences(r).map((q) => `<li>${escapeHtml(q)}</li>`).join('')}</ul>
<p>${escapeHtml(operatingPointLine(r))}</p>
${le ? `<h2>Label efficiency</h2>\n${labelEfficiencySvg(r, title)}\n${htmlTable(labelEfficiencyTable(r))}` : ''}
${r.calibration ? `<h2>Calibration</h2>\n${reliabilitySvg(r, title)}\n${htmlTable(calibrationTable(r))}` : ''}
${r.online ? `<h2>Learning from traffic</h2>\n${onlineSvg(r, title)}\n${(() => { const [text, , ...tbl] = onlineTable(r).split('\n'); return `<p>${escapeHtml(text)}</p>${htmlTable(tbl.join('\n'))}`; })()}` : ''}
</body></html>
`;
}

export async function writeReport(dir: string, r: Report, title: string, logCost = true): Promise<string[]> {
  await fs.mkdir(dir, { recursive: true });
  const files = [join(dir, 'report.json'), join(dir, 'report.md'), join(dir, 'deferral.svg'), join(dir, 'report.html')];
  await fs.writeFile(files[0], JSON.stringify(r, null, 1));
  await fs.writeFile(files[1], markdownReport(r, title));
  await fs.writeFile(files[2], deferralSvg(r, title, logCost));
  await fs.writeFile(files[3], htmlReport(r, title, logCost));
  const extra: Array<[string, () => string]> = [];
  if (r.label_efficiency.val_prompts.length > 1) extra.push(['label-efficiency.svg', () => labelEfficiencySvg(r, title)]);
  if (r.calibration) extra.push(['reliability.svg', () => reliabilitySvg(r, title)]);
  if (r.online) extra.push(['online-regret.svg', () => onlineSvg(r, title)]);
  for (const [name, svg] of extra) {
    files.push(join(dir, name));
    await fs.writeFile(join(dir, name), svg());
  }
  return files;
}
