import { canonicalJson } from './canonical-json';
import type { KeyRecord } from './key';

/**
 * The facts a key's seal binds: everything that decides where a key is trusted and when. A
 * store write that changes any of them (re-scope, later times, another public key, another
 * backend object) breaks the seal. `revokedAt` is not sealed: revocation destroys the backend
 * objects, so clearing it cannot bring a key back. The issuer is not sealed either: it comes
 * from the config file, which the store cannot change.
 */
export type SealedFacts = Pick<
  KeyRecord,
  'id' | 'scope' | 'alg' | 'backendRef' | 'publishAt' | 'activateAt' | 'retireAt' | 'expiresAt'
> & { kid: string; publicJwk: NonNullable<KeyRecord['publicJwk']> };

/** Version of the seal input below; a new version is a new prefix, never a reinterpretation. */
export const SEAL_VERSION = 1;

/**
 * Domain separation: a token's JWS signing input is two base64url segments joined by a dot and
 * can never contain a space or a newline, so no token a key signs can double as its seal, and
 * no seal as a token.
 */
const SEAL_PREFIX = `keywarden key seal v${SEAL_VERSION}\n`;

/**
 * The bytes a key signs about itself when it is created (inside its backend, I3) and that every
 * process checks, with the public key read from the backend, before it trusts the row (DESIGN.md
 * I1, I2, I5 against a store writer). Canonical JSON (RFC 8785 for these values) of the facts,
 * instants as epoch milliseconds.
 */
export function sealInput(facts: SealedFacts): Buffer {
  const body = canonicalJson({
    v: SEAL_VERSION,
    keyId: facts.id,
    kid: facts.kid,
    scope: facts.scope,
    alg: facts.alg,
    backend: facts.backendRef.backend,
    ref: { ...facts.backendRef.ref },
    publicJwk: { ...facts.publicJwk },
    publishAt: facts.publishAt.getTime(),
    activateAt: facts.activateAt.getTime(),
    retireAt: facts.retireAt.getTime(),
    expiresAt: facts.expiresAt.getTime(),
  });
  return Buffer.from(SEAL_PREFIX + body, 'utf8');
}

/** What a backend stores beside the key: the version and the JWS-style signature of sealInput. */
export function encodeSeal(signature: Uint8Array): Buffer {
  return Buffer.from(`v${SEAL_VERSION}.${Buffer.from(signature).toString('base64url')}`, 'ascii');
}

/** The signature in a stored seal, or null when it is not a seal this version wrote. */
export function decodeSeal(stored: Uint8Array): Buffer | null {
  const text = Buffer.from(stored).toString('latin1');
  const m = /^v(\d+)\.([A-Za-z0-9_-]{16,2048})$/.exec(text);
  if (!m || Number(m[1]) !== SEAL_VERSION) return null;
  return Buffer.from(m[2] as string, 'base64url');
}
