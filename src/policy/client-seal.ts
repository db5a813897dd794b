import { canonicalJson } from './canonical-json';

/**
 * The facts of an API client row its seal binds: everything authentication answers with or
 * depends on. `grants` is what the row holds (parsed JSON, whatever its shape); `updatedAt` is
 * not sealed (it decides nothing).
 */
export interface ClientSealFacts {
  id: string;
  name: string;
  secretHash: string | null;
  /** The certificate binding (SPKI SHA-256), or null/absent for a client without one. */
  certSpkiSha256?: string | null;
  grants: unknown;
  createdAt: Date;
}

/**
 * Version of the seal input of a row without a certificate binding; a new version is a new
 * prefix, never a reinterpretation.
 */
export const CLIENT_SEAL_VERSION = 1;
/**
 * Version of the seal input of a row bound to a client certificate: version 1's facts plus the
 * binding. The prefix says which facts were signed, so a binding added to a version 1 row, or
 * stripped from a version 2 row, changes the input and the seal no longer verifies.
 */
export const CLIENT_CERT_SEAL_VERSION = 2;

/**
 * Domain separation. The audit key signs its own key seal (`keywarden key seal v1\n...`),
 * audit statements (two base64url segments joined by a dot: never a space or a newline) and
 * client seals; each kind of input starts differently, so no signature made for one can pass
 * as another.
 */
const CLIENT_SEAL_PREFIX = `keywarden client seal v${CLIENT_SEAL_VERSION}\n`;
const CLIENT_CERT_SEAL_PREFIX = `keywarden client seal v${CLIENT_CERT_SEAL_VERSION}\n`;

/**
 * Grants in the one form a seal covers: scopes sorted (canonical JSON sorts keys), each scope's
 * grants sorted and without duplicates, scopes without grants left out. It grants exactly what
 * the row grants. Null when the value is not an object of string arrays (never written by
 * keywarden); the seal then covers the value as it is.
 */
export function sealedGrants(grants: unknown): Record<string, string[]> | null {
  if (grants === null || typeof grants !== 'object' || Array.isArray(grants)) return null;
  const out: Record<string, string[]> = {};
  for (const [scope, list] of Object.entries(grants as Record<string, unknown>)) {
    if (!Array.isArray(list) || !list.every((g) => typeof g === 'string')) return null;
    const unique = [...new Set(list as string[])].sort();
    if (unique.length > 0) out[scope] = unique;
  }
  return out;
}

/**
 * The bytes the audit key signs for a client row (inside the HSM), and that every process
 * checks with the audit key's public key read from the HSM before it accepts the row's secret:
 * canonical JSON (RFC 8785 for these values) of the facts, the creation instant in epoch ms.
 */
export function clientSealInput(facts: ClientSealFacts): Buffer {
  const common = {
    id: facts.id,
    name: facts.name,
    secretHash: facts.secretHash,
    grants: sealedGrants(facts.grants) ?? facts.grants ?? null,
    createdAt: facts.createdAt.getTime(),
  };
  const cert = facts.certSpkiSha256 ?? null;
  if (cert === null) {
    return Buffer.from(CLIENT_SEAL_PREFIX + canonicalJson({ v: CLIENT_SEAL_VERSION, ...common }), 'utf8');
  }
  const body = canonicalJson({ v: CLIENT_CERT_SEAL_VERSION, ...common, certSpkiSha256: cert });
  return Buffer.from(CLIENT_CERT_SEAL_PREFIX + body, 'utf8');
}

/** A client seal: which audit key signed, and its JWS-style signature over clientSealInput. */
export interface ClientSeal {
  kid: string;
  signature: Buffer;
}

/** The `seal` column's text: `{"kid":"<audit kid>","sig":"<base64url signature>"}`. */
export function encodeClientSeal(seal: ClientSeal): string {
  return JSON.stringify({ kid: seal.kid, sig: Buffer.from(seal.signature).toString('base64url') });
}

const KID_RE = /^[A-Za-z0-9_-]{16,128}$/;
const SIG_RE = /^[A-Za-z0-9_-]{16,2048}$/;

/** The seal in a `seal` column, or null when the text is not a seal this version writes. */
export function decodeClientSeal(text: string | null): ClientSeal | null {
  if (text === null || text.length > 4096) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  const { kid, sig } = v as { kid?: unknown; sig?: unknown };
  if (typeof kid !== 'string' || typeof sig !== 'string' || !KID_RE.test(kid) || !SIG_RE.test(sig)) {
    return null;
  }
  return { kid, signature: Buffer.from(sig, 'base64url') };
}

/**
 * Why an API client row is not trusted (docs/api.md#api-clients-and-authentication). A refused
 * client is answered exactly like an unknown secret: 401 on every route, in every process.
 */
export const CLIENT_REFUSAL_REASONS = {
  unsealed:
    'the row has no seal: made before client sealing (run `keywarden clients seal`), or written into the store outside keywarden',
  'seal-invalid':
    'the seal does not verify over the row: its name, secret hash, certificate binding, grants or creation time were changed, or the seal was copied from another row',
  'seal-key-unknown': 'the seal names an audit key the store does not have',
  'seal-key-refused':
    'the audit key the seal names is not vouched for by its backend (destroyed, its row changed, or its backend not configured)',
  'backend-unavailable':
    "the audit key's backend could not be asked: clients confirmed before stay trusted, new or changed ones wait",
} as const;
export type ClientRefusalReason = keyof typeof CLIENT_REFUSAL_REASONS;

/** One client row that is not trusted, and why (never its secret hash). */
export interface ClientRefusal {
  clientId: string;
  name: string;
  reason: ClientRefusalReason;
  message: string;
}
