/**
 * A router bound to a pool store: the router's pool is always a version the store holds. Changes are computed
 * with the router (an LLM's statistics from its outcomes), written to the store in one transaction (checked
 * against If-Match, and against the epoch of the pool this process read), and then the router takes the store's
 * state; refresh() picks up other processes' changes, and takes the store's whole pool when its epoch changed (a
 * store that came back empty and was seeded again, or another store), whatever its version number.
 * One change or refresh at a time.
 */
import { UnirouteError } from '../errors.js';
import type { AddModelSpec, ModelInfo, PoolEntry, Router } from '../router/router.js';
import { openPoolStore, type ChangeOptions, type PoolStore } from './store.js';
import { decayFactor, withOutcome } from './feedback.js';

export class LivePool {
  private chain: Promise<unknown> = Promise.resolve();
  private constructor(
    readonly router: Router,
    readonly store: PoolStore,
    public version: number,
    /** The fitted model's hash the pool is keyed by (Router.modelHash(), computed once here). */
    readonly modelHash: string,
    /** The epoch of the pool held (the store's identity of it). */
    public epoch: string,
  ) {}

  /** Called when the store's pool turned out to be another one (its epoch changed): from, to, and the version taken. */
  onEpochChange: ((from: string, to: string, version: number) => void) | undefined;

  /**
   * Binds a router to a store. A store with no pool for this model yet takes the router's own pool (embedded in
   * the router file) as its version 1; otherwise the store's pool replaces the router's. `readOnly` (models,
   * route, export) creates nothing: a missing sqlite file, or a store without this model's pool, is NOT_FOUND.
   */
  static async open(router: Router, store: PoolStore | string, by = 'uniroute', o: { readOnly?: boolean } = {}): Promise<LivePool> {
    const s = typeof store === 'string' ? openPoolStore(store, { readOnly: o.readOnly }) : store;
    const hash = router.modelHash();
    let snap;
    try {
      snap = await s.open(hash, router.poolEntries(), by, { create: !o.readOnly });
    } catch (e) {
      await s.close().catch(() => undefined);
      throw e;
    }
    router.setPool(snap.models);
    return new LivePool(router, s, snap.version, hash, snap.epoch);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Takes the store's pool when its version moved; true when it changed the router. */
  refresh(): Promise<boolean> {
    return this.serial(() => this.pull());
  }

  private async pull(force = false): Promise<boolean> {
    const h = await this.store.head();
    if (!force && h.version === this.version && h.epoch === this.epoch) return false;
    const snap = await this.store.read();
    this.router.setPool(snap.models); // checked: a bad entry (a tampered store) changes nothing and throws
    const from = this.epoch;
    this.version = snap.version;
    this.epoch = snap.epoch;
    if (from !== snap.epoch) this.onEpochChange?.(from, snap.epoch, snap.version);
    return true;
  }

  /** A write, refused when the store's pool is not the one this process holds (then it takes the store's pool). */
  private async write<T>(fn: (o: { ifEpoch: string }) => Promise<T>): Promise<T> {
    try {
      return await fn({ ifEpoch: this.epoch });
    } catch (e) {
      if (e instanceof UnirouteError && e.code === 'VERSION_CONFLICT' && /epoch/.test(e.message)) await this.pull(true).catch(() => undefined);
      throw e;
    }
  }

  /** Adds (or with `replace`, replaces) an LLM from its outcomes; acknowledged once the store has it. */
  addModel(name: string, spec: AddModelSpec, o: ChangeOptions & { replace?: boolean } = {}): Promise<ModelInfo & { version: number }> {
    return this.serial(async () => {
      const entry = await this.compute(name, spec, !!o.replace);
      const version = await this.write((x) => this.store.put(entry, { ...o, ...x }));
      await this.follow(version, () => this.router.upsertEntry(entry));
      return { ...this.router.models().find((m) => m.name === name)!, version };
    });
  }

  /** Adds a ready entry (import, or a library caller with statistics). */
  putEntry(entry: PoolEntry, o: ChangeOptions & { replace?: boolean } = {}): Promise<number> {
    return this.serial(async () => {
      this.router.checkEntry(entry);
      const version = await this.write((x) => this.store.put(entry, { ...o, ...x }));
      await this.follow(version, () => this.router.upsertEntry(entry));
      return version;
    });
  }

  /** Replaces the store's whole pool by these entries (checked first), as one change: `uniroute import`. */
  importPool(entries: PoolEntry[], o: ChangeOptions = {}): Promise<number> {
    return this.serial(async () => {
      this.router.checkEntries(entries);
      const version = await this.write((x) => this.store.replaceAll(entries, { ...o, ...x }));
      await this.pull(true);
      return version;
    });
  }

  removeModel(name: string, o: ChangeOptions = {}): Promise<number> {
    return this.serial(async () => {
      const version = await this.write((x) => this.store.remove(name, { ...o, ...x }));
      await this.follow(version, () => this.router.removeModel(name));
      return version;
    });
  }

  /**
   * One production outcome (error in [0, 1]) for an LLM in a decision's cluster and cell, counted once per
   * feedback id; with a half-life, the LLM's older evidence is decayed first. Returns the new version.
   */
  feedback(o: { model: string; cluster: number; cell: number; error: number; id: string; decidedAt: number; halfLifeMs?: number }): Promise<number> {
    return this.serial(async () => {
      if (!this.router.has(o.model)) this.router.exportModel(o.model); // UNKNOWN_MODEL with a did-you-mean
      if (!(Number.isInteger(o.cluster) && o.cluster >= 0 && o.cluster < this.router.k)) throw new UnirouteError('INVALID_ARGUMENT', `cluster ${o.cluster} is not one of this model's`);
      let next: PoolEntry | undefined;
      const version = await this.write((x) =>
        this.store.addOutcome(
          o.model,
          o.id,
          o.decidedAt,
          (cur) => {
            const f = decayFactor(Date.parse(cur.changedAt), Date.now(), o.halfLifeMs);
            next = withOutcome(cur, o.cluster, o.cell, o.error, f);
            this.router.checkEntry(next);
            return next;
          },
          undefined,
          x,
        ),
      );
      await this.follow(version, () => this.router.upsertEntry(next!));
      return version;
    });
  }

  close(): Promise<void> {
    return this.store.close();
  }

  /**
   * After our own write: when it was the only change since the version we hold, apply it here as the store did
   * (no full read); otherwise another process changed the pool too, so take the store's whole state.
   */
  private async follow(version: number, apply: () => void): Promise<void> {
    if (version === this.version + 1) {
      apply();
      this.version = version;
    } else await this.pull(true);
  }

  /** The entry an LLM would have, computed with the router and then taken out again (the store decides). */
  private async compute(name: string, spec: AddModelSpec, replace: boolean): Promise<PoolEntry> {
    const r = this.router;
    const before = r.has(name) ? r.exportModel(name) : undefined;
    if (before && !replace) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${name}" is already in the pool (replace it to change it)`);
    if (before) r.removeModel(name);
    try {
      await r.addModel(name, spec);
      const entry = r.exportModel(name);
      r.removeModel(name);
      return entry;
    } finally {
      if (before && !r.has(name)) r.importModel(before);
    }
  }
}
