/**
 * Bearer tokens (admin, feedback, client keys) are compared as sha256 digests, in constant time: neither a
 * token's content nor its length leaks through the comparison.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export const tokenDigest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** The digest of an Authorization header's bearer token ('' when there is none). */
export const bearerDigest = (authorization: string | undefined): Buffer => tokenDigest(authorization?.startsWith('Bearer ') ? authorization.slice(7) : '');

/** Whether a presented digest is the wanted one. */
export const sameDigest = (given: Buffer, want: Buffer): boolean => timingSafeEqual(given, want);
