import { flattenedVerify, importJWK } from 'jose';
import type { SigningAlg } from '../policy/algorithms';
import type { PublicJwk } from '../policy/key';
import type { SignedMarker } from './audit-store';
import { canonicalJson } from '../policy/canonical-json';

/** What the audit key signs: a checkpoint, the head marker, or a prune anchor. */
export type StatementKind = 'checkpoint' | 'head' | 'anchor';

/** JOSE `typ` per kind, so a signature made for one kind never passes as another. */
export const STATEMENT_TYP: Readonly<Record<StatementKind, string>> = {
  checkpoint: 'keywarden-audit-checkpoint',
  head: 'keywarden-audit-head',
  anchor: 'keywarden-audit-anchor',
};

/** The audit key as a signer: the private half stays in the backend. */
export interface StatementSigner {
  kid: string;
  alg: SigningAlg;
  /** Returns the JWS signature over `input` (the backend hashes as its mechanism requires). */
  sign(input: Uint8Array): Promise<Uint8Array>;
}

const b64 = (s: string | Uint8Array): string => Buffer.from(s).toString('base64url');

/**
 * Signs `statement` as a flattened JWS (header and payload canonical JSON). Stored flattened,
 * never as a compact `a.b.c` string, so nothing in the audit log looks like a bearer token.
 */
export async function signStatement(
  signer: StatementSigner,
  kind: StatementKind,
  statement: Record<string, unknown>,
): Promise<SignedMarker> {
  const protectedHeader = b64(canonicalJson({ alg: signer.alg, kid: signer.kid, typ: STATEMENT_TYP[kind] }));
  const payload = b64(canonicalJson(statement));
  const signature = await signer.sign(Buffer.from(`${protectedHeader}.${payload}`, 'ascii'));
  return { protected: protectedHeader, payload, signature: b64(signature) };
}

/** The kid a signed statement claims (unverified), or null when the header is unreadable. */
export function statementKid(jws: SignedMarker): string | null {
  try {
    const h = JSON.parse(Buffer.from(jws.protected, 'base64url').toString('utf8')) as { kid?: unknown };
    return typeof h.kid === 'string' ? h.kid : null;
  } catch {
    return null;
  }
}

export type StatementCheck =
  { ok: true; kid: string; statement: Record<string, unknown> } | { ok: false; reason: string };

/** Verifies a signed statement of `kind` with a public key; never throws. */
export async function verifyStatement(
  kind: StatementKind,
  jws: SignedMarker | null | undefined,
  jwk: PublicJwk,
  alg: SigningAlg,
): Promise<StatementCheck> {
  if (
    !jws ||
    typeof jws.protected !== 'string' ||
    typeof jws.payload !== 'string' ||
    typeof jws.signature !== 'string'
  ) {
    return { ok: false, reason: 'no signature' };
  }
  try {
    const key = await importJWK({ ...jwk }, alg);
    const res = await flattenedVerify(jws, key, { algorithms: [alg] });
    const header = res.protectedHeader ?? {};
    if (header.typ !== STATEMENT_TYP[kind]) {
      return { ok: false, reason: `signed as ${String(header.typ)}, not ${STATEMENT_TYP[kind]}` };
    }
    const statement = JSON.parse(Buffer.from(res.payload).toString('utf8')) as unknown;
    if (statement === null || typeof statement !== 'object' || Array.isArray(statement)) {
      return { ok: false, reason: 'payload is not an object' };
    }
    return { ok: true, kid: String(header.kid), statement: statement as Record<string, unknown> };
  } catch (e) {
    return { ok: false, reason: `signature invalid (${(e as Error).message})` };
  }
}
