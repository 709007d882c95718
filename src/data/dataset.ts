/**
 * The dataset format (../shared/data/README.md): prompts.jsonl (id, text, …), labels.csv (prompt_id, model,
 * correct, optional cost_usd / input_chars / output_chars) and models.csv (model, list prices, parameter counts).
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from 'csv-parse';
import { UnirouteError, didYouMean } from '../errors.js';
import { jsonLines } from './jsonl.js';

export interface Prompt {
  id: string;
  text: string;
  benchmark?: string;
}

export interface ModelRow {
  model: string;
  priceIn?: number;
  priceOut?: number;
  paramsB?: number;
}

export interface CostAcc {
  costSum: number;
  costRows: number;
  inChars: number;
  outChars: number;
  rows: number;
}

export interface Dataset {
  dir: string;
  prompts: Prompt[];
  promptIndex: Map<string, number>;
  /** LLMs in order of first appearance in labels.csv. */
  models: string[];
  modelRows: Map<string, ModelRow>;
  /** Per LLM: correctness per prompt (index as in `prompts`), NaN where the LLM has no outcome. */
  outcomes: Map<string, Float32Array>;
  costAcc: Map<string, CostAcc>;
}

const num = (v: unknown): number | undefined => {
  if (v === undefined || v === null || v === '') return undefined;
  const x = Number(v);
  return Number.isFinite(x) ? x : undefined;
};

/**
 * A cell that must be empty (unknown) or a finite number >= 0: a cost, a price, a character count. Anything else
 * ("abc", "NaN", -1) is refused with the file, the row and the column, instead of being read as "unknown" and
 * quietly replaced by an estimate.
 */
const amount = (row: Record<string, string>, column: string, where: string): number | undefined => {
  const v = row[column];
  if (v === undefined || v === null || v.trim() === '') return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || x < 0) throw new UnirouteError('BAD_DATASET', `${where}: ${column} = "${v}" is not a number >= 0 (leave the cell empty when it is unknown)`);
  return x;
};

export async function readPrompts(file: string): Promise<Prompt[]> {
  const out: Prompt[] = [];
  const seen = new Set<string>();
  for await (const { rec: o, line } of jsonLines(file, 'BAD_DATASET')) {
    const id = o?.id;
    if ((typeof id !== 'string' && typeof id !== 'number') || typeof o.text !== 'string')
      throw new UnirouteError('BAD_DATASET', `${file}:${line}: each line needs an "id" and a string "text"`);
    const sid = String(id);
    if (seen.has(sid)) throw new UnirouteError('BAD_DATASET', `${file}:${line}: duplicate prompt id "${sid}"`);
    seen.add(sid);
    out.push({ id: sid, text: o.text, benchmark: typeof o.benchmark === 'string' ? o.benchmark : undefined });
  }
  return out;
}

/** The rows of a CSV file, each with the file's line it ends on (a quoted field may span lines). */
async function* csvRows(file: string, required: string[]): AsyncGenerator<{ row: Record<string, string>; line: number }> {
  if (!existsSync(file)) throw new UnirouteError('BAD_DATASET', `${file} does not exist`);
  const parser = createReadStream(file).pipe(parse({ columns: true, bom: true, skip_empty_lines: true, relax_column_count: true, info: true }));
  let checked = false;
  try {
    for await (const { record: row, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      if (!checked) {
        const missing = required.filter((c) => !(c in row));
        if (missing.length) throw new UnirouteError('BAD_DATASET', `${file} lacks the column(s) ${missing.join(', ')}`);
        checked = true;
      }
      yield { row, line: info.lines };
    }
  } catch (e) {
    if (e instanceof UnirouteError) throw e;
    throw new UnirouteError('BAD_DATASET', `${file}: ${(e as Error).message}`);
  }
}

export async function readModels(file: string): Promise<Map<string, ModelRow>> {
  const out = new Map<string, ModelRow>();
  if (!existsSync(file)) return out;
  for await (const { row: r, line } of csvRows(file, ['model'])) {
    const where = `${file}:${line}`;
    out.set(r.model, {
      model: r.model,
      priceIn: amount(r, 'price_in_usd_per_1m_tokens', where),
      priceOut: amount(r, 'price_out_usd_per_1m_tokens', where),
      paramsB: num(r.active_params_b) ?? num(r.params_b) ?? num(r.total_params_b),
    });
  }
  return out;
}

export interface LabelRow {
  promptId: string;
  model: string;
  correct: number;
  costUsd?: number;
  inputChars?: number;
  outputChars?: number;
}

export async function* readLabels(file: string): AsyncGenerator<LabelRow> {
  for await (const { row: r, line } of csvRows(file, ['prompt_id', 'model', 'correct'])) {
    const where = `${file}:${line}`;
    const correct = Number(r.correct);
    if (r.correct === '' || !(correct >= 0 && correct <= 1))
      throw new UnirouteError('BAD_DATASET', `${where}: correct = "${r.correct}" is not a number in [0, 1]`);
    yield {
      promptId: r.prompt_id,
      model: r.model,
      correct,
      costUsd: amount(r, 'cost_usd', where),
      inputChars: amount(r, 'input_chars', where),
      outputChars: amount(r, 'output_chars', where),
    };
  }
}

/** A dataset folder, checked before any work: a missing one, or a file given for it, is named as such. */
export function checkDatasetDir(dir: string, flag = '--data'): void {
  if (!existsSync(dir)) throw new UnirouteError('BAD_DATASET', `dataset folder ${dir} does not exist (${flag} takes a folder holding prompts.jsonl, labels.csv and models.csv)`);
  if (!statSync(dir).isDirectory())
    throw new UnirouteError(
      'BAD_DATASET',
      `${dir} is a file; ${flag} takes the dataset folder holding prompts.jsonl, labels.csv and models.csv` + (/\.(jsonl|csv)$/i.test(dir) ? ` (${dirname(dir) || '.'}?)` : ''),
    );
}

export async function loadDataset(dir: string): Promise<Dataset> {
  checkDatasetDir(dir);
  const prompts = await readPrompts(join(dir, 'prompts.jsonl'));
  if (prompts.length === 0) throw new UnirouteError('BAD_DATASET', `${dir}/prompts.jsonl has no prompt`);
  const promptIndex = new Map(prompts.map((p, i) => [p.id, i]));
  const modelRows = await readModels(join(dir, 'models.csv'));
  const outcomes = new Map<string, Float32Array>();
  const costAcc = new Map<string, CostAcc>();
  const models: string[] = [];
  const labels = join(dir, 'labels.csv');
  for await (const r of readLabels(labels)) {
    const i = promptIndex.get(r.promptId);
    if (i === undefined) throw new UnirouteError('BAD_DATASET', `${labels}: prompt_id "${r.promptId}" is not in prompts.jsonl`);
    let o = outcomes.get(r.model);
    if (!o) {
      o = new Float32Array(prompts.length).fill(NaN);
      outcomes.set(r.model, o);
      costAcc.set(r.model, newCostAcc());
      models.push(r.model);
    }
    o[i] = r.correct;
    addCostRow(costAcc.get(r.model)!, r, prompts[i].text);
  }
  if (models.length === 0) throw new UnirouteError('BAD_DATASET', `${labels} has no outcome`);
  return { dir, prompts, promptIndex, models, modelRows, outcomes, costAcc };
}

/**
 * The proxy price of an open LLM with a parameter count but no list price: USD per 1M tokens (in and out) per
 * billion parameters. 0.0125 is Llama-3-70B's hosted price in zeroeval's models.csv (0.88 USD per 1M tokens) over
 * its 70.6 billion parameters, rounded.
 */
export const DEFAULT_PRICE_PER_BILLION_PARAMS = 0.0125;

export interface CostOptions {
  /** Explicit costs per query; these always win. */
  costs?: Record<string, number>;
  /**
   * Proxy price (USD per 1M tokens, in and out) per billion active parameters, for LLMs with a parameter count in
   * models.csv and no list price. Default DEFAULT_PRICE_PER_BILLION_PARAMS (0.0125); null: no proxy (such an LLM
   * needs an explicit cost).
   */
  pricePerBillionParams?: number | null;
}

/**
 * Cost per query of an LLM: explicit > mean cost_usd of its label rows > list prices x characters / 4 >
 * parameter proxy (unless turned off); otherwise an error naming the LLM.
 */
export function costPerQuery(ds: Dataset, model: string, opts: CostOptions = {}): number {
  const a = ds.costAcc.get(model);
  if (!a && opts.costs?.[model] === undefined) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${model}" has no outcome in ${ds.dir}`);
  return costFrom(model, a ?? newCostAcc(), ds.modelRows.get(model), opts);
}

/**
 * Explicit costs (--model-cost) must name LLMs of the dataset: a typo would otherwise be ignored and the LLM costed
 * from its labels or list price.
 */
export function checkCostNames(ds: Dataset, costs: Record<string, number> | undefined, flag = '--model-cost'): void {
  for (const name of Object.keys(costs ?? {}))
    if (!ds.outcomes.has(name))
      throw new UnirouteError('UNKNOWN_MODEL', `${flag} "${name}=…": no LLM of that name has outcomes in ${ds.dir}${didYouMean(name, ds.models) || ` (${ds.models.length} LLMs do)`}`);
}

export function newCostAcc(): CostAcc {
  return { costSum: 0, costRows: 0, inChars: 0, outChars: 0, rows: 0 };
}

/** Adds one label row to an LLM's cost record (the prompt's length stands in for missing input_chars). */
export function addCostRow(a: CostAcc, r: LabelRow, promptText: string): void {
  a.rows++;
  if (r.costUsd !== undefined) {
    a.costSum += r.costUsd;
    a.costRows++;
  }
  a.inChars += r.inputChars ?? promptText.length;
  a.outChars += r.outputChars ?? 0;
}

/**
 * The one cost-per-query rule, for fit and add-model alike: explicit > mean cost_usd of the LLM's label rows >
 * list prices x characters / 4 > parameter proxy (unless turned off); otherwise an error naming the LLM.
 */
export function costFrom(model: string, a: CostAcc, row: ModelRow | undefined, opts: CostOptions = {}): number {
  const explicit = opts.costs?.[model];
  if (explicit !== undefined) return explicit;
  if (a.costRows > 0) return a.costSum / a.costRows;
  let pin = row?.priceIn;
  let pout = row?.priceOut;
  const perBillion = opts.pricePerBillionParams === undefined ? DEFAULT_PRICE_PER_BILLION_PARAMS : opts.pricePerBillionParams;
  if ((pin === undefined || pout === undefined) && perBillion !== null && row?.paramsB !== undefined) {
    pin = pout = perBillion * row.paramsB;
  }
  if (pin === undefined || pout === undefined || a.rows === 0)
    throw new UnirouteError(
      'NO_COST',
      `no cost for LLM "${model}": the labels have no cost_usd for it and models.csv no list price; ` +
        `give its cost per query: --model-cost "${model}=USD" (fit, eval), --cost USD (add-model), or costs: { "${model}": USD } in the library` +
        (row?.paramsB !== undefined && perBillion === null ? ', or a --price-per-billion-params USD (not none), since its parameter count is known' : ''),
    );
  return ((a.inChars / 4) * pin + (a.outChars / 4) * pout) / 1e6 / a.rows;
}

/** Seeded Fisher-Yates permutation of 0..n-1 (mulberry32). */
export function permutation(n: number, seed: number): Int32Array {
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/** Concatenates datasets (prompt ids prefixed with "<name>/"); an LLM absent from a dataset has no outcome there. */
export function mergeDatasets(parts: Array<{ name: string; ds: Dataset }>): Dataset {
  const prompts: Prompt[] = [];
  const offsets: number[] = [];
  for (const { name, ds } of parts) {
    offsets.push(prompts.length);
    for (const p of ds.prompts) prompts.push({ ...p, id: `${name}/${p.id}` });
  }
  const outcomes = new Map<string, Float32Array>();
  const costAcc = new Map<string, CostAcc>();
  const modelRows = new Map<string, ModelRow>();
  const models: string[] = [];
  parts.forEach(({ ds }, pi) => {
    for (const m of ds.models) {
      let o = outcomes.get(m);
      if (!o) {
        o = new Float32Array(prompts.length).fill(NaN);
        outcomes.set(m, o);
        costAcc.set(m, { costSum: 0, costRows: 0, inChars: 0, outChars: 0, rows: 0 });
        models.push(m);
      }
      o.set(ds.outcomes.get(m)!, offsets[pi]);
      const a = costAcc.get(m)!;
      const b = ds.costAcc.get(m)!;
      a.costSum += b.costSum;
      a.costRows += b.costRows;
      a.inChars += b.inChars;
      a.outChars += b.outChars;
      a.rows += b.rows;
    }
    for (const [k, v] of ds.modelRows) if (!modelRows.has(k)) modelRows.set(k, v);
  });
  return {
    dir: parts.map((p) => p.ds.dir).join(' + '),
    prompts,
    promptIndex: new Map(prompts.map((p, i) => [p.id, i])),
    models,
    modelRows,
    outcomes,
    costAcc,
  };
}
