/**
 * The fitted-router artifact: one safetensors file (a JSON header + little-endian tensors), optionally gzipped.
 * The header's __metadata__ holds `format`, `version`, the manifest (JSON), a sha256 of the tensor bytes and
 * `sha256_all`, a sha256 of the header (manifest and tensor shapes included) and the tensors: a truncated,
 * corrupted, edited or foreign file is refused with a clear error. A file without `sha256_all` (written before it
 * existed, or with it stripped) is refused unless the caller migrates it (`uniroute migrate`). A checksum tells
 * corruption, not intent (anyone can recompute it): every value is checked on load all the same (persist.ts).
 * A gzipped file may not inflate beyond MAX_INFLATE_RATIO times its size.
 * Saves are atomic: write, fsync, rename.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { UnirouteError } from '../errors.js';

export const FORMAT = 'uniroute-router';
export const VERSION = 1;

export type Tensor = Float32Array | Int8Array | Int32Array;
export type TensorMap = Record<string, { data: Tensor; shape: number[] }>;

const DTYPE: Record<string, string> = { Float32Array: 'F32', Int8Array: 'I8', Int32Array: 'I32' };
const BYTES: Record<string, number> = { F32: 4, I8: 1, I32: 4 };

/** A gzipped artifact may inflate to at most this many times its size (and 2 GiB): a gzip bomb is refused early. */
export const MAX_INFLATE_RATIO = 32;

/** The digest over everything: the header (tensor entries and metadata without the digests) and the tensor bytes. */
function digestAll(entries: Record<string, unknown>, meta: { format: unknown; version: unknown; manifest: unknown }, body: Buffer): string {
  const head = JSON.stringify({ ...entries, __metadata__: { format: meta.format, version: meta.version, manifest: meta.manifest } });
  return createHash('sha256').update(head, 'utf8').update(body).digest('hex');
}

export function encodeArtifact(manifest: unknown, tensors: TensorMap, gzip = false): Buffer {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  let offset = 0;
  const parts: Buffer[] = [];
  for (const name of names) {
    const { data, shape } = tensors[name];
    const dtype = DTYPE[data.constructor.name];
    if (!dtype) throw new UnirouteError('INTERNAL', `tensor ${name} has an unsupported type`);
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  const body = Buffer.concat(parts);
  const meta = { format: FORMAT, version: String(VERSION), manifest: JSON.stringify(manifest) };
  header.__metadata__ = {
    ...meta,
    sha256: createHash('sha256').update(body).digest('hex'),
    sha256_all: digestAll(header, meta, body),
  };
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const file = Buffer.concat([len, json, body]);
  return gzip ? gzipSync(file, { level: 9 }) : file;
}

export function decodeArtifact(raw: Buffer, source = 'artifact', opts: { allowLegacy?: boolean } = {}): { manifest: any; tensors: Record<string, Tensor>; legacy: boolean } {
  const bad = (why: string): never => {
    throw new UnirouteError('BAD_ARTIFACT', `${source} is not a valid uniroute router: ${why}`);
  };
  let buf = raw;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    const limit = Math.min(2 ** 31 - 1, Math.max(64 * 2 ** 20, MAX_INFLATE_RATIO * raw.length));
    try {
      buf = gunzipSync(buf, { maxOutputLength: limit });
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError)
        bad(`gzip data inflates beyond ${limit} bytes (${MAX_INFLATE_RATIO} times the file): refused as a possible gzip bomb`);
      bad(`gzip data is corrupt (${(e as Error).message})`);
    }
  }
  if (buf.length < 8) bad('file is too short');
  const hlen = Number(buf.readBigUInt64LE(0));
  if (!Number.isSafeInteger(hlen) || hlen <= 0 || 8 + hlen > buf.length) bad('header length is out of range (truncated or not a safetensors file)');
  let header: any;
  try {
    header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
  } catch {
    bad('header is not JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('header is not a JSON object');
  const meta = header?.__metadata__;
  if (!meta || typeof meta !== 'object' || meta.format !== FORMAT) bad(`no "${FORMAT}" format tag (a foreign safetensors file?)`);
  if (typeof meta.manifest !== 'string') bad('the header has no manifest');
  if (Number(meta.version) !== VERSION) bad(`format version ${meta.version} is not supported (this build reads ${VERSION})`);
  const body = buf.subarray(8 + hlen);
  if (createHash('sha256').update(body).digest('hex') !== meta.sha256) bad('checksum mismatch (truncated or corrupted)');
  const legacy = meta.sha256_all === undefined;
  if (legacy && !opts.allowLegacy)
    bad(
      'it has no sha256_all checksum of its header and manifest (written by an older uniroute, or the field was removed), so an edit of its costs or shapes would go unseen. ' +
        `If you trust where it came from, \`uniroute migrate --router ${source}\` checks every value and rewrites it with the current checksums`,
    );
  if (!legacy) {
    const entries: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(header)) if (k !== '__metadata__') entries[k] = v;
    if (digestAll(entries, meta, body) !== meta.sha256_all) bad('the header or manifest was edited (its checksum does not match)');
  }
  let manifest: any;
  try {
    manifest = JSON.parse(meta.manifest);
  } catch {
    bad('manifest is not JSON');
  }
  const tensors: Record<string, Tensor> = {};
  for (const [name, info] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    const [s, e] = info?.data_offsets ?? [];
    if (!(Number.isInteger(s) && Number.isInteger(e) && 0 <= s && s <= e && e <= body.length)) bad(`tensor ${name} lies outside the file`);
    const width = BYTES[info.dtype];
    if (!width) return bad(`tensor ${name} has unsupported dtype ${info.dtype}`);
    if (!Array.isArray(info.shape) || !info.shape.every((d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0))
      bad(`tensor ${name} has an invalid shape ${JSON.stringify(info.shape)}`);
    const count = (info.shape as number[]).reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(count) || count * width !== e - s) bad(`tensor ${name} declares shape ${JSON.stringify(info.shape)} (${count} values) over ${e - s} bytes`);
    const bytes = Buffer.from(body.subarray(s, e)); // aligned copy
    let t: Tensor;
    if (info.dtype === 'F32') t = new Float32Array(bytes.buffer, bytes.byteOffset, (e - s) / 4);
    else if (info.dtype === 'I8') t = new Int8Array(bytes.buffer, bytes.byteOffset, e - s);
    else if (info.dtype === 'I32') t = new Int32Array(bytes.buffer, bytes.byteOffset, (e - s) / 4);
    else return bad(`tensor ${name} has unsupported dtype ${info.dtype}`);
    if (t.length !== count) bad(`tensor ${name} has ${t.length} values but shape ${JSON.stringify(info.shape)}`);
    tensors[name] = t;
  }
  return { manifest, tensors, legacy };
}

/** Temporary files of earlier saves of this file whose process is gone (a save killed midway) are removed. */
async function removeStaleTemps(dir: string, base: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = n.startsWith(`.${base}.`) && /\.(\d+)\.\d+\.tmp$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive)
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (e) {
        alive = (e as { code?: string }).code === 'EPERM';
      }
    if (!alive) await fs.rm(join(dir, n), { force: true });
  }
}

/** An I/O error in words (the path and what is wrong with it), never a raw `EISDIR: illegal operation…`. */
export function ioWords(e: unknown, path: string): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  const words: Record<string, string> = {
    EISDIR: `${path} is a folder, not a file: give a file path`,
    ENOENT: `the folder ${dirname(path)} does not exist`,
    ENOTDIR: `a part of ${path} is a file, not a folder`,
    EACCES: `permission denied writing ${path}`,
    EPERM: `not permitted to write ${path}`,
    EROFS: `${dirname(path)} is on a read-only file system`,
    ENOSPC: `no space left on the device of ${path}`,
    EDQUOT: `the disk quota is exceeded writing ${path}`,
    ENAMETOOLONG: `the path ${path.slice(0, 80)}… is too long`,
  };
  return (code && words[code]) ?? `cannot write ${path}: ${(e as Error)?.message ?? String(e)}`;
}

/** Writes a file atomically: a temporary file in the same folder, fsync, rename, fsync of the folder. I/O errors are IO_ERROR in words. */
export async function writeFileAtomic(path: string, data: Buffer): Promise<void> {
  try {
    await writeAtomic(path, data);
  } catch (e) {
    if (e instanceof UnirouteError) throw e;
    throw new UnirouteError('IO_ERROR', ioWords(e, path), { cause: e });
  }
}

async function writeAtomic(path: string, data: Buffer): Promise<void> {
  const dir = dirname(path);
  try {
    if ((await fs.stat(path)).isDirectory()) throw Object.assign(new Error('is a folder'), { code: 'EISDIR' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  await removeStaleTemps(dir, basename(path));
  const fh = await fs.open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    await fs.rename(tmp, path);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
  try {
    const d = await fs.open(dir, 'r');
    await d.sync().catch(() => undefined);
    await d.close();
  } catch {
    /* some platforms cannot fsync a directory */
  }
}
