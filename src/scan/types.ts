import type { PublicJwk } from '../policy/key';

/** A key keywarden manages (or once managed): what the scanner looks for. Public half only. */
export interface KnownKey {
  kid: string;
  scope: string;
  state: string;
  publicJwk: PublicJwk;
}

/**
 * How the private material was stored where it was found.
 * `pem-*`: a PEM block (also as text embedded in binary data or in a JSON string).
 * `der-*`: binary ASN.1. `jwk`: a JSON Web Key object with private members (alone or in a JWKS).
 * `raw-*`: bare key bytes of a known key: an EC scalar big- or little-endian (little-endian is
 * how OpenSSL's BIGNUM words lie in memory on x86-64), an Ed25519 seed, an RSA prime factor.
 */
export type Encoding =
  | 'pem-pkcs1'
  | 'pem-pkcs8'
  | 'pem-pkcs8-encrypted'
  | 'pem-legacy-encrypted'
  | 'pem-sec1'
  | 'pem-openssh'
  | 'pem-openssh-encrypted'
  | 'pem-other'
  | 'der-pkcs1'
  | 'der-pkcs8'
  | 'der-sec1'
  | 'jwk'
  | 'raw-ec-be'
  | 'raw-ec-le'
  | 'raw-ed25519-seed'
  | 'raw-rsa-prime'
  | 'raw-rsa-prime-le';

/** One place where private-key material was found. Never carries private bytes. */
export interface Finding {
  file: string;
  /** Byte offset of the first byte of the encoding in the file. */
  offset: number;
  /** Length in bytes of the encoding (PEM block, DER structure, JSON object, raw bytes). */
  length: number;
  encoding: Encoding;
  /** e.g. `EC P-256`, `RSA 2048`, `Ed25519`; `unknown` for encrypted keys. */
  keyType: string;
  /**
   * RFC 7638 thumbprint of the matching public key; never the private material.
   * `null` when it cannot be known (an encrypted key whose public half is not stored beside it,
   * or a key type without a JWK form).
   */
  fingerprint: string | null;
  /** The managed key this is the private half of; `null` for a private key keywarden does not know. */
  match: { kid: string; scope: string; state: string } | null;
}

/** Progress callback payload, called after each chunk. Totals cover every file of the scan. */
export interface ScanProgress {
  bytesDone: number;
  bytesTotal: number;
  file: string;
}

export interface ScanOptions {
  knownKeys: KnownKey[];
  /** Also report private keys that match no known key (`match: null`). Default false. */
  allPrivateKeys?: boolean;
  /** Bytes per step (default 448 KiB). Chunks overlap so nothing split at a boundary is lost. */
  chunkBytes?: number;
  onProgress?: (p: ScanProgress) => void;
}

export interface ScanResult {
  findings: Finding[];
  bytesScanned: number;
  files: number;
  /** Files or directories that could not be read; the scan goes on past them. */
  errors: { file: string; message: string }[];
}
