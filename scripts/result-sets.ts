/**
 * The data sets of docs/results.md, and the text made from their reports: each set's section of docs/results.md
 * and the README's headline table. scripts/eval-readme.ts writes them after running the evaluations;
 * test/docs.test.ts checks that the committed pages are what the committed report.json files give.
 */
import type { Report } from '../src/eval/protocol.js';
import { calibrationTable, labelEfficiencyTable, markdownTable, onlineTable, operatingPointLine, seedsText, spreadText } from '../src/eval/report.js';

export const RESULT_SETS = [
  { name: 'routerbench', title: 'RouterBench (3,164 prompts, 11 LLMs with measured cost)', short: 'RouterBench, 11 LLMs', sweep: true },
  { name: 'zeroeval', title: 'ZeroEval (2,840 prompts; the 28 LLMs with complete outcomes)', short: 'ZeroEval, 28 LLMs', sweep: true },
  { name: 'alpacaeval', title: 'AlpacaEval (805 chat instructions; the 45 LLMs with complete outcomes, graded preference)', short: 'AlpacaEval, 45 LLMs', sweep: false },
  { name: 'arenabench', title: 'Arena-Hard prompts (275 Chatbot Arena prompts, 15 LLMs, judge scores)', short: 'Arena-Hard prompts, 15 LLMs', sweep: false },
];
export type ResultSet = (typeof RESULT_SETS)[number];

/** One data set's section of docs/results.md (image paths relative to docs/). */
export function resultSection(s: ResultSet, report: Report, seconds: number): string {
  const st = report.settings as any;
  return (
    `## ${s.title}\n\n` +
    `${seedsText(st.seeds)}, ${Math.round(st.unseen_fraction * 100)} % of the LLMs unseen, ${st.split_sizes.val} validation / ${st.split_sizes.test} test prompts ` +
    `(${seconds.toFixed(0)} s on this machine). ${spreadText(report)}\n\n${markdownTable(report)}\n\n${operatingPointLine(report)}\n\n` +
    (s.sweep ? `Area by number of validation prompts per unseen LLM (label efficiency):\n\n${labelEfficiencyTable(report)}\n\n` : '') +
    (report.calibration ? `Calibration (cells with >= 10 test prompts):\n\n${calibrationTable(report)}\n\n` : '') +
    (report.online ? `Learning from traffic:\n\n${onlineTable(report)}\n\n` : '') +
    `![deferral curves](results/${s.name}/deferral.svg)\n\n` +
    (s.sweep ? `![label efficiency](results/${s.name}/label-efficiency.svg)\n\n` : '') +
    (report.calibration ? `![reliability](results/${s.name}/reliability.svg)\n\n` : '') +
    (report.online ? `![online regret](results/${s.name}/online-regret.svg)\n\n` : '') +
    `All of it on one page: [results/${s.name}/report.html](results/${s.name}/report.html).\n`
  );
}

/** The README's headline table: UniRoute (K-means) against the simple baselines and the oracle, per data set. */
export function headlineTable(reports: Array<{ set: ResultSet; report: Report }>): string {
  const area = (r: Report, m: string) => (r.methods[m] ? r.methods[m].audc.mean.toFixed(4) : 'n/a');
  const op = (r: Report) => {
    const o = r.operating_point;
    if (!o) return 'n/a';
    const d = 100 * o.accuracy_diff.mean;
    return `${(100 * o.cost_ratio.mean).toFixed(1)} % of λ = 0's cost, ${d >= 0 ? '+' : ''}${d.toFixed(2)} points`;
  };
  return [
    '| data set | UniRoute (K-means) | ZeroRouter (mixing) | best single LLM | oracle | default operating point |',
    '|---|---|---|---|---|---|',
    ...reports.map(({ set, report: r }) => `| ${set.short} | ${area(r, 'uniroute-kmeans')} | ${area(r, 'zero-router')} | ${area(r, 'best-single')} | ${area(r, 'oracle')} | ${op(r)} |`),
  ].join('\n');
}
