import { hash } from 'node:crypto';

/** What an API client may do on a scope: `sign` tokens, `verify` tokens (I6 validation). */
export type Grant = 'sign' | 'verify';

export const CLIENT_GRANTS: readonly Grant[] = ['sign', 'verify'];

/** An API client as stored. Only a hash of its secret is kept; it never leaves the lifecycle. */
export interface ClientRecord {
  id: string;
  name: string;
  /**
   * `scrypt$N$r$p$salt$hash` (base64url parts); null for a client that authenticates with a
   * certificate only (`clients add --cert`): no bearer secret matches it.
   */
  secretHash: string | null;
  /**
   * The client certificate it is bound to (mutual TLS): base64url SHA-256 of the certificate's
   * SubjectPublicKeyInfo, so a certificate renewed over the same key stays bound. Null: no
   * certificate authenticates it. Covered by the seal like the secret hash.
   */
  certSpkiSha256: string | null;
  /** Grants per scope, e.g. `{ "consumer": ["sign"] }`. */
  grants: Record<string, Grant[]>;
  createdAt: Date;
  updatedAt: Date;
  /**
   * The audit key's seal over the row's facts (policy/client-seal.ts), as the text
   * `{"kid","sig"}`; null on rows made before client sealing. Plain text, parsed by the
   * lifecycle: a malformed value written into the store refuses its row, never the whole read.
   */
  seal: string | null;
}

/**
 * A client row as stored, read without trusting its shape: `grants` is the parsed JSON (any
 * value), or `unparsed:<text>` when the column is not JSON (edited by hand), so one bad row
 * never makes a whole read fail.
 */
export interface StoredClient {
  id: string;
  name: string;
  secretHash: string | null;
  certSpkiSha256: string | null;
  grants: unknown;
  createdAt: Date;
  updatedAt: Date;
  seal: string | null;
}

/**
 * A digest of everything an authentication answer depends on: id, name, secret hash, certificate
 * binding, grants, `updated_at` and the seal. A cached answer is good while its row still has this version. It is
 * derived from the row's content rather than from `updated_at` alone, so a replaced secret is
 * noticed even when its write carries the same millisecond as the previous one (a clock stepped
 * back, two hosts' clocks apart, a frozen test clock): every new secret hash has a fresh salt. A
 * row edited outside keywarden (grants changed, a seal stripped or copied by SQL) is noticed too.
 */
export function clientRowVersion(
  c: Pick<ClientRecord, 'id' | 'name' | 'secretHash' | 'certSpkiSha256' | 'updatedAt'> & {
    grants: unknown;
    seal: string | null;
  },
): string {
  const content = JSON.stringify([
    c.id,
    c.name,
    c.secretHash,
    c.grants,
    c.updatedAt.getTime(),
    c.seal,
    // Appended only when set, so the version of a row without a certificate is what it was.
    ...(c.certSpkiSha256 === null ? [] : [c.certSpkiSha256]),
  ]);
  return hash('sha256', content, 'base64url').slice(0, 22);
}

/** The id -> clientRowVersion map of scanned rows. */
export function clientVersionsOf(rows: readonly StoredClient[]): Map<string, string> {
  return new Map(rows.map((r) => [r.id, clientRowVersion(r)]));
}
