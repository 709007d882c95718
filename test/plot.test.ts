/**
 * The plots a reader trips on, checked on the SVG as written, for every plot of the committed results
 * (docs/results/<set>/report.json) and for charts built to be hard: no two texts overlap, every text inside the
 * image and every point label inside the plot, one colour and dash per series, ticks on round steps in one format
 * per axis, no sd bands on the label-efficiency plot, the default operating point marked. The text widths the
 * layout uses are checked against a real renderer (resvg with DejaVu Sans).
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Report } from '../src/eval/protocol.js';
import { deferralSvg, labelEfficiencySvg, onlineSvg, reliabilitySvg } from '../src/eval/report.js';
import { ASCENT, DESCENT, FONT_FAMILY, type Box, decimalsOf, escapeXml, lineChart, linearTicks, logTicks, overlaps, textWidth } from '../src/plot/svg.js';
import { mulberry32 } from '../src/engine/reference.js';

const RESULTS = resolve(__dirname, '..', 'docs', 'results');
const reports = readdirSync(RESULTS)
  .filter((d) => existsSync(join(RESULTS, d, 'report.json')))
  .map((d) => ({ name: d, r: JSON.parse(readFileSync(join(RESULTS, d, 'report.json'), 'utf8')) as Report }));

interface Text {
  cls: string;
  s: string;
  size: number;
  box: Box;
  fill?: string;
}

const unescape = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');
const attr = (a: string, k: string) => new RegExp(`(?:^|\\s)${k}="([^"]*)"`).exec(a)?.[1];

/** Every <text> of an SVG with the box it is drawn in (the rotated y-axis label too). */
function texts(svg: string): Text[] {
  return [...svg.matchAll(/<text ([^>]*)>([^<]*)<\/text>/g)].map(([, a, raw]) => {
    const s = unescape(raw);
    const size = Number(attr(a, 'font-size'));
    const w = textWidth(s, size);
    const anchor = attr(a, 'text-anchor') ?? 'start';
    const rot = /translate\(([-0-9.]+) ([-0-9.]+)\) rotate\(-90\)/.exec(attr(a, 'transform') ?? '');
    if (rot) {
      // rotated a quarter turn counter-clockwise about (tx, ty): the text runs upwards, centred there
      const [tx, ty] = [Number(rot[1]), Number(rot[2])];
      return { cls: attr(a, 'class')!, s, size, box: { x0: tx - ASCENT * size, x1: tx + DESCENT * size, y0: ty - w / 2, y1: ty + w / 2 } };
    }
    const x = Number(attr(a, 'x'));
    const y = Number(attr(a, 'y'));
    const x0 = anchor === 'start' ? x : anchor === 'middle' ? x - w / 2 : x - w;
    return { cls: attr(a, 'class')!, s, size, box: { x0, x1: x0 + w, y0: y - ASCENT * size, y1: y + DESCENT * size }, fill: attr(a, 'fill') };
  });
}
const viewBox = (svg: string) => {
  const [, , w, h] = /viewBox="([^"]+)"/.exec(svg)![1].split(' ').map(Number);
  return { x0: 0, y0: 0, x1: w, y1: h };
};
const frameOf = (svg: string): Box => {
  const a = /<rect class="frame" ([^>]*)\/>/.exec(svg)![1];
  const [x, y, w, h] = ['x', 'y', 'width', 'height'].map((k) => Number(attr(a, k)));
  return { x0: x, y0: y, x1: x + w, y1: y + h };
};
const seriesStyles = (svg: string) => [...svg.matchAll(/<polyline class="series" ([^>]*)\/>/g)].map(([, a]) => ({ color: attr(a, 'stroke')!, dash: attr(a, 'stroke-dasharray') ?? '' }));

/** What a reader trips on, for one SVG. */
function checkLayout(svg: string, what: string) {
  const ts = texts(svg);
  const vb = viewBox(svg);
  const frame = frameOf(svg);
  expect(ts.length, what).toBeGreaterThan(5);
  for (const t of ts) {
    expect(t.box.x0 >= vb.x0 && t.box.x1 <= vb.x1 && t.box.y0 >= vb.y0 && t.box.y1 <= vb.y1, `${what}: "${t.s}" (${t.cls}) leaves the image`).toBe(true);
    if (t.cls === 'label') expect(t.box.x0 >= frame.x0 && t.box.x1 <= frame.x1 && t.box.y0 >= frame.y0 && t.box.y1 <= frame.y1, `${what}: label "${t.s}" leaves the plot`).toBe(true);
  }
  for (let i = 0; i < ts.length; i++)
    for (let j = i + 1; j < ts.length; j++) expect(overlaps(ts[i].box, ts[j].box), `${what}: "${ts[i].s}" (${ts[i].cls}) and "${ts[j].s}" (${ts[j].cls}) overlap`).toBe(false);
  // one look per series: colour and dash together never repeat, and colours alone do not while the palette lasts
  const st = seriesStyles(svg);
  const pairs = st.map((x) => `${x.color}|${x.dash}`);
  expect(new Set(pairs).size, `${what}: series share a colour and dash`).toBe(pairs.length);
  if (st.length <= 12) expect(new Set(st.map((x) => x.color)).size, `${what}: colours repeat`).toBe(st.length);
  // legend: one entry per series, in the series' look
  const legend = [...svg.matchAll(/<line class="legend" ([^>]*)\/>/g)].map(([, a]) => `${attr(a, 'stroke')}|${attr(a, 'stroke-dasharray') ?? ''}`);
  expect(legend, `${what}: legend`).toEqual(pairs);
  return ts;
}

/** Tick values and texts of an axis: on round steps (linear) or 1-2-5 decades (log), in one format. */
function checkTicks(ts: Text[], cls: 'tick-x' | 'tick-y', log: boolean, what: string, prefix = '') {
  const labels = ts.filter((t) => t.cls === cls).map((t) => t.s);
  expect(labels.length, `${what}: ${cls}`).toBeGreaterThanOrEqual(3);
  for (const l of labels) {
    expect(l.startsWith(prefix), `${what}: ${l}`).toBe(true);
    expect(l, `${what}: no exponent`).not.toMatch(/e/i);
  }
  const v = labels.map((l) => Number(l.slice(prefix.length)));
  if (log) {
    for (const [i, x] of v.entries()) {
      const mant = Number((x / 10 ** Math.floor(Math.log10(x) + 1e-9)).toPrecision(3));
      expect([1, 1.5, 2, 3, 5, 7], `${what}: ${labels[i]} is not a round log tick`).toContain(mant);
      // each tick's own shortest decimal: no trailing zeros ($0.10000)
      expect(labels[i].slice(prefix.length), `${what}: ${labels[i]}`).toBe(String(x).includes('e') ? x.toFixed(decimalsOf(x)) : String(x));
    }
  } else {
    const sorted = [...v].sort((a, b) => a - b);
    const steps = sorted.slice(1).map((x, i) => x - sorted[i]);
    const step = steps[0];
    for (const d of steps) expect(d, `${what}: uneven ${cls} ${labels.join(' ')}`).toBeCloseTo(step, 9);
    const mant = Number((step / 10 ** Math.floor(Math.log10(step) + 1e-9)).toPrecision(3));
    expect([1, 2, 2.5, 5], `${what}: step ${step} of ${labels.join(' ')}`).toContain(mant);
    for (const x of v) expect(Math.abs(x / step - Math.round(x / step)), `${what}: ${x} is not a multiple of ${step}`).toBeLessThan(1e-6);
    // one number of decimals for all
    expect(new Set(labels.map((l) => (l.split('.')[1] ?? '').length)).size, `${what}: ${labels.join(' ')}`).toBe(1);
  }
}

describe('the committed results\' plots', () => {
  it('there are reports to check (docs/results/<set>/report.json)', () => {
    expect(reports.map((x) => x.name).sort()).toEqual(['alpacaeval', 'arenabench', 'routerbench', 'zeroeval']);
  });

  for (const { name, r } of reports) {
    it(`${name}: the deferral curves`, () => {
      const svg = deferralSvg(r, name);
      const ts = checkLayout(svg, `${name} deferral`);
      checkTicks(ts, 'tick-x', true, `${name} deferral`, '$');
      checkTicks(ts, 'tick-y', false, `${name} deferral`);
      // the default operating point: a diamond in uniroute-kmeans' colour, labelled, and in the legend
      expect(svg).toMatch(/<polygon class="highlight"[^>]*stroke="#1f77b4"/);
      expect(ts.filter((t) => t.cls === 'label' && t.s === 'default operating point')).toHaveLength(1);
      expect(ts.some((t) => t.cls === 'legend' && /default operating point/.test(t.s))).toBe(true);
      // one band (uniroute-kmeans'), not a wash of them
      expect([...svg.matchAll(/<polygon class="band"/g)]).toHaveLength(1);
      // every unseen LLM is a point; those left unlabelled are counted in the note
      const dots = [...svg.matchAll(/<circle class="marker"/g)].length;
      expect(dots).toBe(r.llms.length);
      const labels = ts.filter((t) => t.cls === 'label').length - 1;
      const note = ts.find((t) => t.cls === 'note');
      if (labels < dots) expect(note?.s).toContain(`${dots - labels} of the ${dots} unseen LLMs unlabelled`);
      else expect(note).toBeUndefined();
      // most names find room (the frontier first), even on alpacaeval's 45
      expect(labels).toBeGreaterThanOrEqual(Math.min(dots - 2, 15));
    });

    if (r.label_efficiency.val_prompts.length > 1)
      it(`${name}: label efficiency (no sd bands)`, () => {
        const svg = labelEfficiencySvg(r, name);
        const ts = checkLayout(svg, `${name} label efficiency`);
        checkTicks(ts, 'tick-y', false, `${name} label efficiency`);
        expect(ts.filter((t) => t.cls === 'tick-x').map((t) => t.s)).toEqual(r.label_efficiency.val_prompts.map(String));
        expect(svg).not.toMatch(/<polygon class="band"/);
      });

    if (r.calibration)
      it(`${name}: reliability`, () => {
        const svg = reliabilitySvg(r, name);
        const ts = checkLayout(svg, `${name} reliability`);
        checkTicks(ts, 'tick-x', false, `${name} reliability`);
        checkTicks(ts, 'tick-y', false, `${name} reliability`);
      });

    if (r.online)
      it(`${name}: online regret`, () => {
        const svg = onlineSvg(r, name);
        const ts = checkLayout(svg, `${name} online`);
        checkTicks(ts, 'tick-x', false, `${name} online`);
        checkTicks(ts, 'tick-y', false, `${name} online`);
        expect(svg).not.toMatch(/<polygon class="band"/);
        // the stream is the test prompts: the axis runs at most to the round tick just past its end
        expect(Math.max(...ts.filter((t) => t.cls === 'tick-x').map((t) => Number(t.s)))).toBeLessThanOrEqual(1.12 * (r.settings as any).split_sizes.test);
      });
  }
});

describe('charts built to be hard', () => {
  it('a long title wraps, a long legend fits, 16 series keep distinct looks, 60 crowded points get no overlapping label', () => {
    const rand = mulberry32(4);
    const series = Array.from({ length: 16 }, (_, i) => ({
      name: `method-number-${i}-with-a-rather-long-name`,
      points: Array.from({ length: 20 }, (_, t) => ({ x: 1e-5 * 1.5 ** t, y: 0.3 + 0.02 * t + 0.01 * i })),
    }));
    const markers = Array.from({ length: 60 }, (_, i) => ({ x: 3e-5 * (1 + rand()), y: 0.4 + 0.05 * rand(), label: `an-llm-named-${i}/with-an-org-prefix-${i}` }));
    const svg = lineChart({
      title: 'A data set whose title is far too long for one line of the chart (RouterBench, ZeroEval, AlpacaEval): it must wrap onto a second line and still stay inside the image',
      subtitle: 'and a subtitle',
      xLabel: 'cost',
      yLabel: 'accuracy',
      xLog: true,
      xPrefix: '$',
      series,
      markers,
      highlights: [{ x: 4e-5, y: 0.42, label: 'default operating point', legend: 'the default', color: '#1f77b4' }],
      unlabelledNote: (u, n) => `${u} of ${n} unlabelled`,
    });
    const ts = checkLayout(svg, 'hard chart');
    expect(ts.filter((t) => t.cls === 'title')).toHaveLength(2);
    checkTicks(ts, 'tick-x', true, 'hard chart', '$');
    checkTicks(ts, 'tick-y', false, 'hard chart');
    const labels = ts.filter((t) => t.cls === 'label');
    expect(labels.length).toBeGreaterThan(3);
    expect(labels.length).toBeLessThan(61);
    expect(labels[0].s).toBe('default operating point'); // always drawn, first
    expect(ts.find((t) => t.cls === 'note')?.s).toBe(`${61 - labels.length} of 60 unlabelled`);
  });

  it('ticks: round steps and 1-2-5 decades over ranges of every size', () => {
    const rand = mulberry32(7);
    for (let i = 0; i < 500; i++) {
      const lo = (rand() - 0.3) * 10 ** (rand() * 8 - 4);
      const hi = lo + rand() * 10 ** (rand() * 8 - 4) + 1e-9;
      const t = linearTicks(lo, hi, 7);
      expect(t[0]).toBeLessThanOrEqual(lo + 1e-12);
      expect(t[t.length - 1]).toBeGreaterThanOrEqual(hi - 1e-12);
      expect(t.length).toBeGreaterThanOrEqual(2);
      expect(t.length).toBeLessThanOrEqual(13);
      const step = t[1] - t[0];
      expect([1, 2, 2.5, 5, 10]).toContain(Number((step / 10 ** Math.floor(Math.log10(step))).toPrecision(3)));
      const a = 10 ** (rand() * 10 - 8);
      const b = a * 10 ** (rand() * 5 + 0.05);
      const l = logTicks(a, b);
      expect(l[0]).toBeLessThanOrEqual(a * (1 + 1e-9));
      expect(l[l.length - 1]).toBeGreaterThanOrEqual(b * (1 - 1e-9));
      for (const x of l) expect([1, 1.5, 2, 3, 5, 7]).toContain(Number((x / 10 ** Math.floor(Math.log10(x) + 1e-9)).toPrecision(3)));
    }
  });
});

describe('the layout measures text as a renderer draws it', () => {
  const FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';
  const has = existsSync(FONT);
  if (!has && process.env.CI === 'true') throw new Error(`${FONT} is missing: .ci/run installs fonts-dejavu-core`);
  it.skipIf(!has)(`textWidth is at least resvg's width of every text of the committed plots (DejaVu Sans; ${has ? FONT : 'no DejaVu Sans here: skipped'})`, async () => {
    const { Resvg } = await import('@resvg/resvg-js');
    const all = new Set<string>();
    for (const { name, r } of reports) for (const svg of [deferralSvg(r, name), r.calibration ? reliabilitySvg(r, name) : '']) for (const t of texts(svg)) all.add(t.s);
    const sample = [...all].filter((_, i) => i % 3 === 0).concat(['WWWWWWWW', 'iiiiiiii', 'mean accuracy on test prompts', '$0.00005', 'λ ± — …']);
    let tight = 0;
    for (const s of sample) {
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="2000" height="60"><text x="10" y="40" font-size="20" font-family="${FONT_FAMILY}">${escapeXml(s)}</text></svg>`;
      const bb = new Resvg(svg, { font: { loadSystemFonts: false, fontFiles: [FONT], defaultFontFamily: 'DejaVu Sans' } }).getBBox();
      expect(bb, s).toBeDefined();
      // the ink lies within the advance widths (a glyph's ink is never wider than its advance here, save a hair)
      expect(bb!.width, `"${s}"`).toBeLessThanOrEqual(textWidth(s, 20) + 1);
      expect(bb!.y, `"${s}"`).toBeGreaterThanOrEqual(40 - ASCENT * 20 - 0.5);
      expect(bb!.y + bb!.height, `"${s}"`).toBeLessThanOrEqual(40 + DESCENT * 20 + 0.5);
      if (bb!.width > 0.85 * textWidth(s, 20)) tight++;
    }
    // and it is no gross overestimate either (the layout would waste room)
    expect(tight / sample.length).toBeGreaterThan(0.9);
  });
});
