import { createHash } from 'node:crypto';
import { canonicalJson } from '../policy/canonical-json';

/** `prevHash` of the first record ever written (seq 1). */
export const GENESIS_HASH = '0'.repeat(64);

/** Version of the hashed serialisation; part of every hash so a future format cannot collide. */
export const CHAIN_FORMAT = 1;

/** What a record's hash covers: every column except the hash itself. */
export interface ChainedContent {
  seq: number;
  at: Date;
  type: string;
  actor: string;
  scope: string | null;
  kid: string | null;
  data: Record<string, unknown>;
  prevHash: string;
}

/** A stored record: its content and the hash over it. */
export interface ChainedRecord extends ChainedContent {
  hash: string;
}

/** SHA-256 (hex) over the canonical JSON of the record's content, `prevHash` included. */
export function recordHash(c: ChainedContent): string {
  const doc = {
    v: CHAIN_FORMAT,
    seq: c.seq,
    at: c.at.getTime(),
    type: c.type,
    actor: c.actor,
    scope: c.scope,
    kid: c.kid,
    data: c.data,
    prevHash: c.prevHash,
  };
  return createHash('sha256').update(canonicalJson(doc), 'utf8').digest('hex');
}

/** Builds the record that follows `prev` (seq + 1, linked to its hash). */
export function chainNext(
  prev: { seq: number; hash: string },
  content: Omit<ChainedContent, 'seq' | 'prevHash'>,
): ChainedRecord {
  const c: ChainedContent = { ...content, seq: prev.seq + 1, prevHash: prev.hash };
  return { ...c, hash: recordHash(c) };
}
