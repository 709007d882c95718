/** Progress on stderr: a redrawn bar on a terminal, a line every few seconds otherwise; silent with --quiet. */
export class Progress {
  private last = 0;
  private lastStage = '';
  private stageStart = 0;
  constructor(
    private readonly enabled: boolean,
    private readonly tty = !!process.stderr.isTTY,
  ) {}

  /** `detail` (what runs now, within the stage) follows the bar; a new detail does not restart the rate. */
  update(stage: string, done: number, total?: number, detail?: string): void {
    if (!this.enabled) return;
    const now = Date.now();
    const final = total !== undefined && done >= total;
    if (stage !== this.lastStage) this.stageStart = now;
    // a log (not a terminal) gets no "0 done" line: it would stand just before an error about the input
    if (!this.tty && done === 0 && !final) {
      this.lastStage = stage;
      return;
    }
    if (stage === this.lastStage && !final && now - this.last < (this.tty ? 100 : 2000)) return;
    const tail = detail && !final ? `: ${detail}` : '';
    this.last = now;
    this.lastStage = stage;
    const secs = (now - this.stageStart) / 1000;
    // the rate once a second has passed (before that it is noise), and the time left when the total is known
    const rate = secs >= 1 && done > 0 ? done / secs : 0;
    const fmtRate = rate >= 100 ? Math.round(rate).toLocaleString('en-US') : rate.toPrecision(2);
    let line: string;
    if (total && total > 0) {
      const f = Math.min(1, done / total);
      const w = 24;
      const bar = '#'.repeat(Math.round(f * w)).padEnd(w, '.');
      const eta = rate > 0 && done < total ? `, ETA ${formatSeconds((total - done) / rate)}` : '';
      line = `${stage} [${bar}] ${done}/${total}${rate > 0 ? ` (${fmtRate}/s${eta})` : ''}${tail}`;
    } else {
      line = `${stage} ${done.toLocaleString('en-US')}${rate > 0 ? ` (${fmtRate}/s)` : ''}${tail}`;
    }
    // on a terminal the line is cut to its width (a wrapped line would not be redrawn in place)
    const cols = process.stderr.columns;
    if (this.tty) process.stderr.write(`\r\x1b[2K${cols && line.length >= cols ? `${line.slice(0, cols - 2)}…` : line}${final ? '\n' : ''}`);
    else process.stderr.write(`${line}\n`);
  }

  done(message?: string): void {
    if (!this.enabled) return;
    if (this.tty) process.stderr.write('\r\x1b[2K');
    if (message) process.stderr.write(`${message}\n`);
  }
}

/** 75 s as "1 min 15 s", 4000 s as "1 h 7 min". */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
