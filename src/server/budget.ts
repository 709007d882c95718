/**
 * Per-key budgets (USD per day), kept by pacing λ online rather than by refusing requests: the key's spend rate is
 * estimated (an exponentially decayed sum over about an hour of the day), and λ's multiplier m = e^θ moves with
 * log(rate / target rate): up while the key spends faster than its budget allows (cheaper LLMs), down when it
 * spends slower (better ones), within [0.1, 10,000]. Time is a parameter, so that tests can run a short "day".
 */
export class BudgetPacer {
  private spent = 0; // decayed sum of costs
  private at: number;
  private theta = 0;
  private lastAdjust: number;

  constructor(
    public budgetPerDay: number,
    private readonly dayMs = 86_400_000,
    now = Date.now(),
    private readonly gain = 0.5,
  ) {
    this.at = now;
    this.lastAdjust = now;
  }

  /** The averaging time of the spend rate: an hour of the day. */
  private get tau(): number {
    return this.dayMs / 24;
  }

  private decay(now: number): void {
    if (now > this.at) {
      this.spent *= Math.exp(-(now - this.at) / this.tau);
      this.at = now;
    }
  }

  /** Estimated spend rate, USD per day. */
  ratePerDay(now = Date.now()): number {
    this.decay(now);
    return (this.spent / this.tau) * this.dayMs;
  }

  record(cost: number, now = Date.now()): void {
    if (!(cost > 0) || !Number.isFinite(cost)) return;
    this.decay(now);
    this.spent += cost;
    this.adjust(now);
  }

  private adjust(now: number): void {
    const dt = now - this.lastAdjust;
    const step = this.tau / 100; // adjusted at most this often (36 s of a real day)
    if (dt < step) return;
    this.lastAdjust = now;
    const target = this.budgetPerDay;
    const err = Math.log((this.ratePerDay(now) + 1e-3 * target) / target);
    this.theta = Math.min(Math.log(1e4), Math.max(Math.log(0.1), this.theta + this.gain * err * Math.min(1, dt / (10 * step))));
  }

  /** The multiplier of λ for this key now. */
  multiplier(now = Date.now()): number {
    this.adjust(now);
    return Math.min(1e4, Math.max(0.1, Math.exp(this.theta)));
  }
}
