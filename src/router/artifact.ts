/**
 * The fitted-router artifact: one safetensors file (a JSON header + little-endian tensors), optionally gzipped.
 * The header's __metadata__ holds `format`, `version`, the manifest (JSON) and a sha256 of the tensor bytes, so a
 * truncated, corrupted or foreign file is refused with a clear error. Saves are atomic: write, fsync, rename.
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
  header.__metadata__ = {
    format: FORMAT,
    version: String(VERSION),
    sha256: createHash('sha256').update(body).digest('hex'),
    manifest: JSON.stringify(manifest),
  };
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const file = Buffer.concat([len, json, body]);
  return gzip ? gzipSync(file, { level: 9 }) : file;
}

export function decodeArtifact(raw: Buffer, source = 'artifact'): { manifest: any; tensors: Record<string, Tensor> } {
  const bad = (why: string): never => {
    throw new UnirouteError('BAD_ARTIFACT', `${source} is not a valid uniroute router: ${why}`);
  };
  let buf = raw;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (e) {
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
  const meta = header?.__metadata__;
  if (!meta || meta.format !== FORMAT) bad(`no "${FORMAT}" format tag (a foreign safetensors file?)`);
  if (Number(meta.version) !== VERSION) bad(`format version ${meta.version} is not supported (this build reads ${VERSION})`);
  const body = buf.subarray(8 + hlen);
  if (createHash('sha256').update(body).digest('hex') !== meta.sha256) bad('checksum mismatch (truncated or corrupted)');
  let manifest: any;
  try {
    manifest = JSON.parse(meta.manifest);
  } catch {
    bad('manifest is not JSON');
  }
  const tensors: Record<string, Tensor> = {};
  for (const [name, info] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    const [s, e] = info.data_offsets ?? [];
    if (!(Number.isInteger(s) && Number.isInteger(e) && 0 <= s && s <= e && e <= body.length)) bad(`tensor ${name} lies outside the file`);
    const bytes = Buffer.from(body.subarray(s, e)); // aligned copy
    const count = (info.shape as number[]).reduce((a, b) => a * b, 1);
    let t: Tensor;
    if (info.dtype === 'F32') t = new Float32Array(bytes.buffer, bytes.byteOffset, (e - s) / 4);
    else if (info.dtype === 'I8') t = new Int8Array(bytes.buffer, bytes.byteOffset, e - s);
    else if (info.dtype === 'I32') t = new Int32Array(bytes.buffer, bytes.byteOffset, (e - s) / 4);
    else return bad(`tensor ${name} has unsupported dtype ${info.dtype}`);
    if (t.length !== count) bad(`tensor ${name} has ${t.length} values but shape ${JSON.stringify(info.shape)}`);
    tensors[name] = t;
  }
  return { manifest, tensors };
}

/** Writes a file atomically: a temporary file in the same folder, fsync, rename, fsync of the folder. */
export async function writeFileAtomic(path: string, data: Buffer): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  const fh = await fs.open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
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
