import { createPrivateKey, type JsonWebKey } from 'node:crypto';
import type { Hit } from './identify';

/** Longest JSON object considered for one JWK (an RSA-8192 private JWK is ~6 KiB). */
export const MAX_JWK_BYTES = 16 * 1024;

/**
 * Every private JWK has both a `"kty"` and a `"d"` member; `kty"` is what is searched for:
 * Buffer.indexOf scans for a needle's first byte, and `"` is every few bytes of JSON text
 * (searching `"d"` cost 2 ms per MiB of JSON logs, `kty"` 0.15 ms).
 */
const KTY_MEMBER = Buffer.from('kty"', 'latin1');
const OPEN = 0x7b; // {
const CLOSE = 0x7d; // }
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Finds JWK objects with a private member `d` (every private JWK type has one), alone or as
 * members of a JWKS: from each `"kty"` member the innermost enclosing `{...}` is cut out,
 * parsed as JSON, kept if it has a `d`, and handed to node:crypto. Each key of a JWKS is its
 * own finding at its own offset.
 */
export function findJwk(buf: Buffer): Hit[] {
  const hits: Hit[] = [];
  let lastEnd = -1;
  for (let k = buf.indexOf(KTY_MEMBER); k !== -1; k = buf.indexOf(KTY_MEMBER, k + 1)) {
    const at = k - 1; // the opening quote of "kty"
    if (at < 0 || buf[at] !== QUOTE || at < lastEnd || !followedByColon(buf, k + KTY_MEMBER.length)) continue;
    const span = enclosingObject(buf, at);
    if (span === undefined) continue;
    let jwk: unknown;
    try {
      jwk = JSON.parse(buf.toString('utf8', span.start, span.end));
    } catch {
      continue;
    }
    if (!isPrivateJwk(jwk)) continue;
    try {
      const key = createPrivateKey({ key: jwk, format: 'jwk' });
      hits.push({ offset: span.start, length: span.end - span.start, encoding: 'jwk', privateKey: key });
      lastEnd = span.end;
    } catch {
      // A JSON object with "kty" and "d" that node:crypto rejects is not a usable key.
    }
  }
  return hits;
}

function isPrivateJwk(v: unknown): v is JsonWebKey {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.kty === 'string' && typeof o.d === 'string';
}

function followedByColon(buf: Buffer, i: number): boolean {
  while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x09 || buf[i] === 0x0a || buf[i] === 0x0d)) i++;
  return buf[i] === 0x3a;
}

/** The innermost `{...}` around `at`, matched with string awareness, within MAX_JWK_BYTES. */
function enclosingObject(buf: Buffer, at: number): { start: number; end: number } | undefined {
  const floor = Math.max(0, at - MAX_JWK_BYTES);
  let tries = 0;
  // Only the MAX_JWK_BYTES before `at` are searched (a lastIndexOf over the whole buffer for
  // each "d" in binary data would be quadratic).
  const before = buf.subarray(floor, at);
  let open = before.lastIndexOf(OPEN);
  while (open >= 0 && tries++ < 16) {
    const end = matchObject(buf, floor + open, Math.min(buf.length, floor + open + MAX_JWK_BYTES));
    if (end !== undefined && end > at) return { start: floor + open, end };
    // Negative positions make lastIndexOf search from the end: stop at the start.
    open = open > 0 ? before.lastIndexOf(OPEN, open - 1) : -1;
  }
  return undefined;
}

/** End (exclusive) of the JSON object opening at `open`, or undefined if it does not close. */
function matchObject(buf: Buffer, open: number, limit: number): number | undefined {
  let depth = 0;
  let inString = false;
  for (let i = open; i < limit; i++) {
    const c = buf[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      else if (c! < 0x20) return undefined; // raw control bytes never occur inside JSON strings
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN) depth++;
    else if (c === CLOSE && --depth === 0) return i + 1;
  }
  return undefined;
}
