/** SQLite locks held by another process, waited for by sleeping rather than on the calling thread. */
import { UnirouteError } from '../errors.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether a SQLite error is a lock held by another connection (retried), rather than a real failure. */
const busy = (e: unknown) => /^SQLITE_(BUSY|LOCKED)/.test(String((e as { code?: string })?.code ?? ''));

/**
 * Runs `fn` (one synchronous transaction) and, when the file is locked by another process, retries it after a
 * short sleep instead of waiting on this thread: the event loop (and routing) never waits on the lock. Gives up
 * with STORE_UNAVAILABLE after `timeoutMs`.
 */
export async function withoutBlocking<T>(fn: () => T, timeoutMs: number, what: () => string): Promise<T> {
  const t0 = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return fn();
    } catch (e) {
      if (!busy(e)) throw e;
      const waited = Date.now() - t0;
      if (waited >= timeoutMs)
        throw new UnirouteError('STORE_UNAVAILABLE', `${what()}: the file stayed locked by another process for ${waited} ms; retry later`);
      // 1, 2, 4 … 50 ms, with jitter, never past the deadline
      const d = Math.min(50, 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
      await sleep(Math.max(1, Math.min(d, timeoutMs - waited)));
    }
  }
}
