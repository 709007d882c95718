/**
 * Writing an evaluation: report.json, report.md (tables), report.html (plots and tables), and the plots as SVG:
 * the deferral curves, the label-efficiency sweep, the reliability of the posteriors and the regret of learning
 * from traffic. `renderReport` rewrites all but report.json from a report.json (scripts/render-results.ts).
 */
import { escapeXml as escapeHtml, lineChart, type Series } from '../plot/svg.js';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Report } from './protocol.js';

const fmt = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
/** The number of seeds of a report. */
const seedsOf = (r: Report) => Number((r.settings as any).seeds ?? r.seeds?.length ?? 1);
/** "1 seed", "5 seeds". */
export const seedsText = (n: number) => (n === 1 ? '1 seed' : `${n} seeds`);
/** Mean ± sd over seeds; the mean alone for one seed (its sd would be a meaningless 0). */
const pmOf = (r: Report) => (s: { mean: number; sd: number }, d = 3) => (seedsOf(r) === 1 ? fmt(s.mean, d) : `${fmt(s.mean, d)} ± ${fmt(s.sd, d)}`);
/** "Mean ± sd over seeds." or, for one seed, what stands in the tables. */
export const spreadText = (r: Report) => (seedsOf(r) === 1 ? 'One seed: the values of that seed, no spread.' : 'Mean ± sd over seeds.');

export function markdownTable(r: Report): string {
  const pm = pmOf(r);
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

/** Online learning: the cumulative regret against the router that knows every validation label, per exploration rate. */
export function onlineTable(r: Report): string {
  const o = r.online;
  if (!o) return '';
  const pm = pmOf(r);
  const rows = Object.entries(o.rates).sort((a, b) => Number(a[0]) - Number(b[0]));
  return [
    `Each unseen LLM starts from ${o.start_labels} validation labels; the test prompts are replayed as traffic at λ = ${fmt(o.lambda.mean, 4)} (the reference's default point) and each decision's true outcome is fed back. ` +
      `Regret: the reference's (quality − λ·cost) minus the online router's, summed over the stream${seedsOf(r) === 1 ? '' : ' (mean ± sd over seeds)'}. Reference: quality ${pm(o.reference.quality)}, cost ${o.reference.cost.mean.toExponential(3)}.`,
    '',
    '| exploration | cumulative regret ↓ | regret per prompt | quality | cost | explored prompts |',
    '|---|---|---|---|---|---|',
    ...rows.map(([rate, x]) => `| ${Number(rate) === 0 ? 'none (greedy)' : `${Math.round(Number(rate) * 100)} % Thompson`} | ${pm(x.final_regret, 2)} | ${pm(x.regret_per_prompt, 4)} | ${pm(x.quality)} | ${x.cost.mean.toExponential(3)} | ${fmt(x.explored.mean, 0)} |`),
  ].join('\n');
}

/** The default operating point's line: its cost relative to λ = 0 and its accuracy difference, on test prompts. */
export function operatingPointLine(r: Report): string {
  const o = r.operating_point;
  if (!o) return '';
  const one = seedsOf(r) === 1;
  return (
    `Default operating point (uniroute-kmeans, the pool's operating point from its posterior on kept train prompts): on test prompts it costs ` +
    `${(100 * o.cost_ratio.mean).toFixed(1)} %${one ? '' : ` ± ${(100 * o.cost_ratio.sd).toFixed(1)}`} of λ = 0's cost, at ` +
    `${(100 * o.accuracy_diff.mean).toFixed(2)}${one ? '' : ` ± ${(100 * o.accuracy_diff.sd).toFixed(2)}`} points of accuracy.`
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
    `${seedsText(s.seeds)}; ${s.llms_with_complete_outcomes} LLMs with complete outcomes, ${Math.round(s.unseen_fraction * 100)} % unseen per seed; ` +
      `prompts: ${s.split_sizes.train} train / ${s.split_sizes.val} validation / ${s.split_sizes.test} test. ${spreadText(r)} ` +
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
    r.llms?.length ? `## The unseen LLMs\n\n${llmTable(r)}\n` : '',
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
<p>${seedsText(s.seeds)}; ${s.llms_with_complete_outcomes} LLMs with complete outcomes, ${Math.round(s.unseen_fraction * 100)} % unseen per seed; prompts: ${s.split_sizes.train} train / ${s.split_sizes.val} validation / ${s.split_sizes.test} test. ${spreadText(r)} Area: mean accuracy over the unseen LLMs' cost range.</p>
${deferralSvg(r, title, logCost)}
<h2>Methods</h2>
${htmlTable(markdownTable(r))}
<ul>${qncSentences(r).map((q) => `<li>${escapeHtml(q)}</li>`).join('')}</ul>
<p>${escapeHtml(operatingPointLine(r))}</p>
${le ? `<h2>Label efficiency</h2>\n${labelEfficiencySvg(r, title)}\n${htmlTable(labelEfficiencyTable(r))}` : ''}
${r.calibration ? `<h2>Calibration</h2>\n${reliabilitySvg(r, title)}\n${htmlTable(calibrationTable(r))}` : ''}
${r.online ? `<h2>Learning from traffic</h2>\n${onlineSvg(r, title)}\n${(() => { const [text, , ...tbl] = onlineTable(r).split('\n'); return `<p>${escapeHtml(text)}</p>${htmlTable(tbl.join('\n'))}`; })()}` : ''}
${r.llms?.length ? `<h2>The unseen LLMs</h2>\n${htmlTable(llmTable(r))}` : ''}
</body></html>
`;
}

export async function writeReport(dir: string, r: Report, title: string, logCost = true): Promise<string[]> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(join(dir, 'report.json'), JSON.stringify(r, null, 1));
  return [join(dir, 'report.json'), ...(await renderReport(dir, r, title, logCost))];
}

/** Writes everything of a report but report.json (the tables and the plots) from the report. */
export async function renderReport(dir: string, r: Report, title: string, logCost = true): Promise<string[]> {
  const files = [join(dir, 'report.md'), join(dir, 'deferral.svg'), join(dir, 'report.html')];
  await fs.writeFile(files[0], markdownReport(r, title));
  await fs.writeFile(files[1], deferralSvg(r, title, logCost));
  await fs.writeFile(files[2], htmlReport(r, title, logCost));
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

/** The unseen LLMs: cost per query, accuracy on the test prompts (mean over the seeds in which each was unseen). */
export function llmTable(r: Report): string {
  const rows = [...(r.llms ?? [])].sort((a, b) => a.cost - b.cost);
  return [
    '| LLM | cost per query (USD) | test accuracy | seeds unseen |',
    '|---|---|---|---|',
    ...rows.map((l) => `| ${l.name} | ${l.cost.toExponential(3)} | ${fmt(l.accuracy)} | ${l.seeds} |`),
  ].join('\n');
}

/**
 * One look per method in every plot: UniRoute's variants in blues, greens and purples (UniRoute with K-means the
 * thickest), the baselines in warm colours, the oracle black and the two ceilings grey and olive. Colour and dash
 * differ between any two methods.
 */
export const METHOD_STYLES: Record<string, { color: string; dash: string; width: number }> = {
  'uniroute-kmeans': { color: '#1f77b4', dash: '', width: 3 },
  'uniroute-kmeans-suggested': { color: '#17becf', dash: '8 3', width: 2 },
  'uniroute-kmeans-no-shrinkage': { color: '#9467bd', dash: '3 3', width: 2 },
  'uniroute-learned-map': { color: '#2ca02c', dash: '12 3 3 3', width: 2 },
  knn: { color: '#ff7f0e', dash: '6 2 2 2 2 2', width: 1.8 },
  'retrained-mlp': { color: '#8c564b', dash: '10 5', width: 1.8 },
  'zero-router': { color: '#d62728', dash: '', width: 2 },
  'best-single': { color: '#e377c2', dash: '2 4', width: 1.8 },
  oracle: { color: '#000000', dash: '', width: 1.5 },
  'oracle-benchmark': { color: '#7f7f7f', dash: '8 3', width: 1.5 },
  'oracle-difficulty': { color: '#bcbd22', dash: '3 3', width: 1.5 },
};
const styleOf = (name: string): Partial<Series> => METHOD_STYLES[name] ?? {};

/** Where UniRoute (K-means) routes by default, on the test prompts: mean cost and accuracy over seeds. */
export function operatingPoint(r: Report): { cost: number; quality: number } | undefined {
  const o = r.operating_point;
  if (o?.cost && o.quality) return { cost: o.cost.mean, quality: o.quality.mean };
  // reports before those fields: learning from traffic's reference is the same router at the same λ on the same prompts
  if (o && r.online) return { cost: r.online.reference.cost.mean, quality: r.online.reference.quality.mean };
  return undefined;
}

/** The unseen LLMs as labelled points: those no cheaper LLM beats first (the frontier), then by accuracy. */
function llmMarkers(r: Report) {
  const ls = [...(r.llms ?? [])].sort((a, b) => a.cost - b.cost || b.accuracy - a.accuracy);
  let best = -Infinity;
  const frontier = new Set<string>();
  for (const l of ls)
    if (l.accuracy > best) {
      frontier.add(l.name);
      best = l.accuracy;
    }
  return ls.map((l) => ({ x: l.cost, y: l.accuracy, label: l.name, rank: (frontier.has(l.name) ? 0 : 1) + (1 - l.accuracy) }));
}

/**
 * Deferral curves of every method: mean quality against mean cost per query (USD, log scale by default), a band of
 * ± one sd over seeds for UniRoute (K-means) alone (more bands hide the curves), its default operating point as a
 * diamond, and each unseen LLM as a labelled point (its test accuracy, averaged over the seeds in which it was
 * unseen).
 */
export function deferralSvg(r: Report, title: string, logCost = true): string {
  const n = seedsOf(r);
  const op = operatingPoint(r);
  const markers = llmMarkers(r);
  return lineChart({
    title,
    subtitle: `Deferral curves on test prompts, ${n === 1 ? 'one seed' : `mean over ${n} seeds (band: ± 1 sd of uniroute-kmeans)`}; dots: the unseen LLMs alone`,
    xLabel: `mean cost per query (USD${logCost ? ', log scale' : ''})`,
    yLabel: 'mean accuracy on test prompts',
    xLog: logCost,
    xPrefix: '$',
    series: Object.entries(r.methods)
      .sort((a, b) => b[1].audc.mean - a[1].audc.mean)
      .map(([name, meth]) => ({
        name: `${name} (area ${meth.audc.mean.toFixed(3)})`,
        points: meth.curve.map((p) => ({ x: p.cost, y: p.quality })),
        band: name === 'uniroute-kmeans' && n > 1 ? meth.curve.map((p) => ({ x: p.cost, lo: p.quality - (p.sd ?? 0), hi: p.quality + (p.sd ?? 0) })) : undefined,
        ...styleOf(name),
      })),
    markers,
    highlights: op && r.methods['uniroute-kmeans'] ? [{ x: op.cost, y: op.quality, label: 'default operating point', legend: "uniroute-kmeans' default operating point", color: METHOD_STYLES['uniroute-kmeans'].color }] : [],
    unlabelledNote: (u, all) => `${u} of the ${all} unseen LLMs unlabelled where names would collide (every one is in report.md's table)`,
  });
}

/** Label efficiency: area against validation prompts per unseen LLM (log scale); the sd is in report.json (bands would hide the curves). */
export function labelEfficiencySvg(r: Report, title: string): string {
  const sizes = r.label_efficiency.val_prompts;
  const n = seedsOf(r);
  return lineChart({
    title: `${title}: label efficiency`,
    subtitle: `Area under the deferral curve by validation prompts per unseen LLM, ${n === 1 ? 'one seed' : `mean over ${n} seeds`} (the oracle, far above, left out)`,
    xLabel: 'validation prompts per unseen LLM (log scale)',
    yLabel: 'area under the deferral curve',
    xLog: true,
    xTicks: sizes,
    xFormat: (x) => String(Math.round(x)),
    series: Object.entries(r.label_efficiency.methods)
      .filter(([name]) => name !== 'oracle')
      .map(([name, rows]) => ({ name, points: rows.map((x) => ({ x: x.val_prompts, y: x.audc.mean })), dots: true, ...styleOf(name) })),
  });
}

/** Sizes in order, light to dark: viridis without its pale yellow end, each with a dash of its own (the largest solid). */
const SIZE_COLORS = ['#bddf26', '#7ad151', '#22a884', '#2a788e', '#414487', '#440154'];
const SIZE_DASHES = ['2 4', '3 3', '6 2 2 2 2 2', '12 3 3 3', '8 3', ''];

/** Reliability: predicted error against observed test error, cells binned by prediction, one series per validation size. */
export function reliabilitySvg(r: Report, title: string): string {
  const c = r.calibration!;
  const sizes = Object.keys(c.reliability).map(Number).sort((a, b) => a - b);
  return lineChart({
    title: `${title}: reliability of the predicted errors`,
    subtitle: `Unseen LLMs' (LLM, cluster) cells with >= ${c.min_test_prompts} test prompts, binned by predicted error; on the diagonal, predictions are calibrated`,
    xLabel: 'predicted error of a cell (posterior mean)',
    yLabel: 'observed error on its test prompts',
    xRange: [0, 1],
    yRange: [0, 1],
    xTicks: [0, 0.2, 0.4, 0.6, 0.8, 1],
    yTicks: [0, 0.2, 0.4, 0.6, 0.8, 1],
    series: [
      { name: 'perfect calibration', points: [{ x: 0, y: 0 }, { x: 1, y: 1 }], color: '#7f7f7f', dash: '4 4', width: 1 },
      ...sizes.map((v, i) => ({
        name: `${v} validation prompts (coverage ${fmt(c.coverage95[v], 2)})`,
        points: c.reliability[v].map((b) => ({ x: b.predicted, y: b.observed })),
        // the largest size (the main result) solid and darkest; the others lighter, dashed, toward the smallest
        color: SIZE_COLORS[Math.max(0, SIZE_COLORS.length - sizes.length + i)],
        dash: SIZE_DASHES[Math.max(0, SIZE_DASHES.length - sizes.length + i)],
        width: i === sizes.length - 1 ? 2.5 : 1.8,
        dots: true,
      })),
    ],
  });
}

/** Online learning: the cumulative regret against the router that knows every validation label, per exploration rate. */
export function onlineSvg(r: Report, title: string): string {
  const o = r.online!;
  const n = seedsOf(r);
  const looks = [
    { color: '#1f77b4', dash: '' },
    { color: '#ff7f0e', dash: '8 3' },
    { color: '#2ca02c', dash: '3 3' },
    { color: '#9467bd', dash: '12 3 3 3' },
  ];
  return lineChart({
    title: `${title}: learning from traffic`,
    subtitle: `Each unseen LLM starts from ${o.start_labels} labels; ${n === 1 ? 'one seed' : `mean over ${n} seeds (the legend gives the end's sd over seeds)`}`,
    xLabel: 'prompts served',
    yLabel: 'cumulative regret (vs all validation labels)',
    series: Object.entries(o.rates)
      .sort((a, b) => Number(a[0]) - Number(b[0]))
      .map(([rate, x], i) => ({
        // the sd over seeds is as large as the mean here: bands of it would cover the plot
        name: `${Number(rate) === 0 ? 'greedy (no exploration)' : `${Math.round(Number(rate) * 100)} % Thompson`}: ${pmOf(r)(x.final_regret, 1)} at the end`,
        // the stream is the test prompts: reports before the fix put its last, shorter stretch at a whole one's end
        points: [{ x: 0, y: 0 }, ...x.curve.map((p) => ({ x: Math.min(p.prompts, Number((r.settings as any).split_sizes?.test ?? Infinity)), y: p.regret }))],
        ...looks[i % looks.length],
      })),
  });
}
