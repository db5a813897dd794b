import type { SigningAlg } from './algorithms';

/** A public JWK as stored and published: public members only, never `d`/`p`/`q`/... */
export type { PublicJwk } from '@keywarden/verify';
import type { PublicJwk } from '@keywarden/verify';

/** Where the private half lives. Opaque to everything above the backend that made it. */
export interface BackendRef {
  /** Name of the configured backend (a key of `backends:` in the config). */
  backend: string;
  /** Backend-specific address, e.g. `{ tokenLabel, id, label }` or `{ vaultUrl, name, version }`. */
  ref: Record<string, string>;
}

/** Row status: `generating` is written before the backend call, `ready` after it completed. */
export type KeyRowStatus = 'generating' | 'ready';

/** A key as the lifecycle sees it. Timestamps are fixed at creation and only move earlier. */
export interface KeyRecord {
  /** Internal row id (uuid), known before the public key (and so the kid) exists. */
  id: string;
  /** RFC 7638 thumbprint of the public key; null while `generating`. */
  kid: string | null;
  scope: string;
  alg: SigningAlg;
  status: KeyRowStatus;
  backendRef: BackendRef;
  publicJwk: PublicJwk | null;
  publishAt: Date;
  activateAt: Date;
  retireAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  revokedReason: string | null;
  destroyedAt: Date | null;
  createdAt: Date;
  createdBy: string;
}

/** The timestamps the effective-state function reads. */
export type KeyTimes = Pick<KeyRecord, 'publishAt' | 'activateAt' | 'retireAt' | 'expiresAt' | 'revokedAt'>;
