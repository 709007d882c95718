/**
 * Rewrites the tables and plots of saved evaluations from their report.json, without running the evaluation again:
 * report.md, report.html and the SVGs of each docs/results/<set>/ (or the folders given), and, with --png, a PNG
 * of every plot beside it (@resvg/resvg-js, a devDependency) to look at.
 *   node dist/scripts/render-results.js [--png] [DIR ...]
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { renderReport } from '../src/eval/report.js';
import type { Report } from '../src/eval/protocol.js';
import { RESULT_SETS } from './result-sets.js';

const argv = process.argv.slice(2);
const png = argv.includes('--png');
const dirs = argv.filter((a) => !a.startsWith('--'));
const targets = dirs.length ? dirs.map((dir) => ({ dir, title: undefined as string | undefined })) : RESULT_SETS.map((s) => ({ dir: join('docs', 'results', s.name), title: s.title }));
for (const t of targets) {
  const file = join(t.dir, 'report.json');
  if (!existsSync(file)) {
    process.stderr.write(`render-results: ${file} does not exist\n`);
    process.exit(1);
  }
  const r = JSON.parse(await fs.readFile(file, 'utf8')) as Report;
  // the title: the data set's from eval:readme, else the report.md's first line
  const title = t.title ?? ((await fs.readFile(join(t.dir, 'report.md'), 'utf8').catch(() => '')).match(/^# (.*)$/m)?.[1] ?? t.dir);
  const files = await renderReport(t.dir, r, title, true);
  if (png) {
    const { Resvg } = await import('@resvg/resvg-js');
    for (const f of files.filter((x) => x.endsWith('.svg'))) {
      const out = f.replace(/\.svg$/, '.png');
      await fs.writeFile(out, new Resvg(await fs.readFile(f, 'utf8'), { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng());
      files.push(out);
    }
  }
  process.stderr.write(`${files.join('\n')}\n`);
}
