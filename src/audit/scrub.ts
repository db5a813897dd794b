/**
 * Audit data must never hold a secret (I7 records are read by many; I3 forbids key material
 * anywhere outside the backend). Callers are expected to pass none; this is the net under them:
 * values under secret-sounding keys and anything shaped like a compact JWS are replaced, and the
 * result is plain JSON (Dates become ISO strings), so the stored text re-hashes identically.
 */
export const REDACTED = '[redacted]';

/** Key names whose values are never stored, whatever they hold. */
const SECRET_KEY =
  /^(pin|so-?pin|pin-?value|password|passphrase|secret|client-?secret|secret-?value|token|jwt|access-?token|id-?token|refresh-?token|authorization|cookie|private-?key|d|p|q|dp|dq|qi|k)$/i;

/** Three base64url segments, the first a JOSE header (`eyJ` = base64url of `{"`). */
const COMPACT_JWS = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{10,}/g;

const MAX_DEPTH = 8;
const MAX_STRING = 2000;

export function scrubAuditData(data: unknown): Record<string, unknown> {
  if (data === undefined || data === null) return {};
  const plain = JSON.parse(JSON.stringify(data)) as unknown;
  const out = scrubValue(plain, 0);
  return out !== null && typeof out === 'object' && !Array.isArray(out)
    ? (out as Record<string, unknown>)
    : { value: out };
}

function scrubValue(v: unknown, depth: number): unknown {
  if (typeof v === 'string') {
    const s = v.replace(COMPACT_JWS, '[redacted-jws]');
    return s.length > MAX_STRING ? `${s.slice(0, MAX_STRING)}…` : s;
  }
  if (v === null || typeof v !== 'object') return v;
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (Array.isArray(v)) return v.map((x) => scrubValue(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    out[k] = SECRET_KEY.test(k) ? REDACTED : scrubValue(x, depth + 1);
  }
  return out;
}
