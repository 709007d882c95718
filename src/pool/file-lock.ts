/**
 * One writer for a router file. A server that saves admin changes to its router file (`serve --router FILE`
 * without --pool, with the admin token set) claims it with a marker beside it, `FILE.serving` (its pid, host and
 * address), removed when it stops. A CLI write to a claimed file is refused with a message that says where to send
 * the change instead (the server, or a pool store with --pool): written to the file, it would be overwritten by the
 * server's next save and never seen by the server. A marker whose process is gone (on this host) is stale and
 * ignored. The server also refuses to save over a file that another process changed since it read it.
 */
import { closeSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { UnirouteError } from '../errors.js';

export interface ServingMarker {
  pid: number;
  host: string;
  /** Where it serves, once listening. */
  url?: string;
  since: string;
}

export const markerPath = (file: string) => `${file}.serving`;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The live server that claims `file`, if any (a stale marker is removed). */
export function servedBy(file: string): ServingMarker | undefined {
  let m: ServingMarker;
  try {
    m = JSON.parse(readFileSync(markerPath(file), 'utf8'));
  } catch {
    return undefined;
  }
  if (!m || typeof m.pid !== 'number') return undefined;
  if (m.host === hostname() && (!alive(m.pid) || m.pid === process.pid)) {
    if (m.pid !== process.pid) rmSync(markerPath(file), { force: true });
    return undefined;
  }
  return m;
}

export function inUseError(file: string, m: ServingMarker, what = 'a change written to it'): UnirouteError {
  const where = m.url ?? `pid ${m.pid} on ${m.host}`;
  const api = m.url ?? 'http://HOST:PORT';
  return new UnirouteError(
    'FILE_IN_USE',
    `${file} is served by a running uniroute server (${where}${m.url ? `, pid ${m.pid} on ${m.host}` : ''}), which saves its own pool to it: ${what} would be overwritten by its next save and never seen by it. ` +
      `Send the change to the server (POST ${api}/v1/models or DELETE ${api}/v1/models/<name>, with the admin token), ` +
      `or keep the pool in a store both can change: \`uniroute serve --router ${file} --pool sqlite:${file}.pool.db\` and \`--pool sqlite:${file}.pool.db\` on the CLI`,
  );
}

/** Refuses (FILE_IN_USE) when a live server claims `file`. */
export function refuseIfServed(file: string, what?: string): void {
  const m = servedBy(file);
  if (m) throw inUseError(file, m, what);
}

/** Claims `file` for this process; throws FILE_IN_USE when another live server has it. Returns the release. */
export function claimRouterFile(file: string): { setUrl: (url: string) => void; release: () => void } {
  const marker: ServingMarker = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(markerPath(file), 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new UnirouteError('IO_ERROR', `cannot claim ${file} for this server: ${(e as Error).message}`);
      const other = servedBy(file); // removes a stale one
      if (other) throw inUseError(file, other, 'a second server saving to it');
      if (attempt === 0) continue;
      // ours already (another app of this process on the same file): take it over
      fd = openSync(markerPath(file), 'w');
    }
    writeSync(fd, JSON.stringify(marker));
    closeSync(fd);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      try {
        const m = JSON.parse(readFileSync(markerPath(file), 'utf8')) as ServingMarker;
        if (m.pid === process.pid && m.host === marker.host) rmSync(markerPath(file), { force: true });
      } catch {
        /* gone already */
      }
    };
    process.once('exit', release);
    return {
      setUrl: (url) => {
        marker.url = url;
        try {
          writeFileSync(markerPath(file), JSON.stringify(marker));
        } catch {
          /* the marker still names the pid */
        }
      },
      release: () => {
        process.off('exit', release);
        release();
      },
    };
  }
  throw new UnirouteError('FILE_IN_USE', `cannot claim ${file}: its marker ${markerPath(file)} keeps coming back`);
}

/** What identifies a file's content on disk, to tell whether another process replaced or changed it. */
export function fileStamp(file: string): string | undefined {
  try {
    const s = statSync(file);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return undefined;
  }
}
