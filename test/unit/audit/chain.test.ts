import { strict as assert } from 'node:assert';
import { chainNext, GENESIS_HASH, recordHash, type ChainedContent } from '../../../src/audit/chain';

const base: ChainedContent = {
  seq: 1,
  at: new Date('2026-01-01T00:00:00Z'),
  type: 'key.created',
  actor: 'scheduler',
  scope: 'consumer',
  kid: 'k1',
  data: { reason: 'first key', n: 1 },
  prevHash: GENESIS_HASH,
};

describe('audit chain hashing', () => {
  it('is SHA-256 hex, deterministic, and independent of data key order', () => {
    const h = recordHash(base);
    assert.match(h, /^[0-9a-f]{64}$/);
    assert.equal(recordHash({ ...base, data: { n: 1, reason: 'first key' } }), h);
  });

  it('changes when any covered field changes (seq, at, type, actor, scope, kid, data, prevHash)', () => {
    const h = recordHash(base);
    const variants: Partial<ChainedContent>[] = [
      { seq: 2 },
      { at: new Date(base.at.getTime() + 1) },
      { type: 'key.revoked' },
      { actor: 'cli:mallory@host' },
      { scope: 'enterprise' },
      { scope: null },
      { kid: 'k2' },
      { kid: null },
      { data: { reason: 'first key', n: 2 } },
      { data: { reason: 'first key', n: 1, extra: true } },
      { prevHash: 'f'.repeat(64) },
    ];
    for (const v of variants) assert.notEqual(recordHash({ ...base, ...v }), h, JSON.stringify(v));
  });

  it('links each record to the hash of the one before', () => {
    const first = chainNext({ seq: 0, hash: GENESIS_HASH }, base);
    const second = chainNext(first, { ...base, type: 'key.activated' });
    assert.equal(first.seq, 1);
    assert.equal(first.prevHash, GENESIS_HASH);
    assert.equal(second.seq, 2);
    assert.equal(second.prevHash, first.hash);
    assert.equal(second.hash, recordHash(second));
  });
});
