/**
 * The dataset format (../shared/data/README.md): prompts.jsonl (id, text, …), labels.csv (prompt_id, model,
 * correct, optional cost_usd / input_chars / output_chars) and models.csv (model, list prices, parameter counts).
 */
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse';
import { UnirouteError } from '../errors.js';
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

async function* csvRows(file: string, required: string[]): AsyncGenerator<Record<string, string>> {
  if (!existsSync(file)) throw new UnirouteError('BAD_DATASET', `${file} does not exist`);
  const parser = createReadStream(file).pipe(parse({ columns: true, bom: true, skip_empty_lines: true, relax_column_count: true }));
  let checked = false;
  try {
    for await (const row of parser as AsyncIterable<Record<string, string>>) {
      if (!checked) {
        const missing = required.filter((c) => !(c in row));
        if (missing.length) throw new UnirouteError('BAD_DATASET', `${file} lacks the column(s) ${missing.join(', ')}`);
        checked = true;
      }
      yield row;
    }
  } catch (e) {
    if (e instanceof UnirouteError) throw e;
    throw new UnirouteError('BAD_DATASET', `${file}: ${(e as Error).message}`);
  }
}

export async function readModels(file: string): Promise<Map<string, ModelRow>> {
  const out = new Map<string, ModelRow>();
  if (!existsSync(file)) return out;
  for await (const r of csvRows(file, ['model'])) {
    out.set(r.model, {
      model: r.model,
      priceIn: num(r.price_in_usd_per_1m_tokens),
      priceOut: num(r.price_out_usd_per_1m_tokens),
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
  let line = 1;
  for await (const r of csvRows(file, ['prompt_id', 'model', 'correct'])) {
    line++;
    const correct = Number(r.correct);
    if (r.correct === '' || !(correct >= 0 && correct <= 1))
      throw new UnirouteError('BAD_DATASET', `${file}: row ${line}: correct = "${r.correct}" is not a number in [0, 1]`);
    yield {
      promptId: r.prompt_id,
      model: r.model,
      correct,
      costUsd: num(r.cost_usd),
      inputChars: num(r.input_chars),
      outputChars: num(r.output_chars),
    };
  }
}

export async function loadDataset(dir: string): Promise<Dataset> {
  if (!existsSync(dir)) throw new UnirouteError('BAD_DATASET', `dataset folder ${dir} does not exist`);
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

export interface CostOptions {
  /** Explicit costs per query; these always win. */
  costs?: Record<string, number>;
  /** Proxy price (USD per 1M tokens, in and out) per billion active parameters, for LLMs with no list price. */
  pricePerBillionParams?: number;
}

/**
 * Cost per query of an LLM: explicit > mean cost_usd of its label rows > list prices x characters / 4 >
 * parameter proxy (when asked for); otherwise an error naming the LLM.
 */
export function costPerQuery(ds: Dataset, model: string, opts: CostOptions = {}): number {
  const a = ds.costAcc.get(model);
  if (!a && opts.costs?.[model] === undefined) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${model}" has no outcome in ${ds.dir}`);
  return costFrom(model, a ?? newCostAcc(), ds.modelRows.get(model), opts);
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
 * list prices x characters / 4 > parameter proxy (when asked for); otherwise an error naming the LLM.
 */
export function costFrom(model: string, a: CostAcc, row: ModelRow | undefined, opts: CostOptions = {}): number {
  const explicit = opts.costs?.[model];
  if (explicit !== undefined) return explicit;
  if (a.costRows > 0) return a.costSum / a.costRows;
  let pin = row?.priceIn;
  let pout = row?.priceOut;
  if ((pin === undefined || pout === undefined) && opts.pricePerBillionParams !== undefined && row?.paramsB !== undefined) {
    pin = pout = opts.pricePerBillionParams * row.paramsB;
  }
  if (pin === undefined || pout === undefined || a.rows === 0)
    throw new UnirouteError(
      'NO_COST',
      `no cost for LLM "${model}": the labels have no cost_usd for it and models.csv no list price; pass an explicit cost` +
        (row?.paramsB !== undefined && opts.pricePerBillionParams === undefined ? ' (or --price-per-billion-params, since its parameter count is known)' : ''),
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
