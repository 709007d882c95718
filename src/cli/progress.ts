/** Progress on stderr: a redrawn bar on a terminal, a line every few seconds otherwise; silent with --quiet. */
export class Progress {
  private last = 0;
  private lastStage = '';
  constructor(
    private readonly enabled: boolean,
    private readonly tty = !!process.stderr.isTTY,
  ) {}

  update(stage: string, done: number, total?: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    const final = total !== undefined && done >= total;
    if (stage === this.lastStage && !final && now - this.last < (this.tty ? 100 : 2000)) return;
    this.last = now;
    this.lastStage = stage;
    let line: string;
    if (total && total > 0) {
      const f = Math.min(1, done / total);
      const w = 24;
      const bar = '#'.repeat(Math.round(f * w)).padEnd(w, '.');
      line = `${stage} [${bar}] ${done}/${total}`;
    } else {
      line = `${stage} ${done.toLocaleString('en-US')}`;
    }
    if (this.tty) process.stderr.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
    else process.stderr.write(`${line}\n`);
  }

  done(message?: string): void {
    if (!this.enabled) return;
    if (this.tty) process.stderr.write('\r\x1b[2K');
    if (message) process.stderr.write(`${message}\n`);
  }
}
