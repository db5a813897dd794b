import { strict as assert } from 'node:assert';
import { cacheLifetimeSeconds } from '../../../packages/verify/src/cache-control';
import { TokenBucket } from '../../../packages/verify/src/token-bucket';

describe('cacheLifetimeSeconds', () => {
  const bounds = { maxSeconds: 600, defaultSeconds: 60, minSeconds: 5 };

  it('uses max-age, minus Age', () => {
    assert.equal(cacheLifetimeSeconds('public, max-age=300', null, bounds), 300);
    assert.equal(cacheLifetimeSeconds('max-age=300', '100', bounds), 200);
    assert.equal(cacheLifetimeSeconds('Max-Age="120"', null, bounds), 120);
  });

  it('never caches longer than maxSeconds nor shorter than minSeconds', () => {
    assert.equal(cacheLifetimeSeconds('max-age=86400', null, bounds), 600);
    assert.equal(cacheLifetimeSeconds('max-age=0', null, bounds), 5);
    assert.equal(cacheLifetimeSeconds('max-age=10', '60', bounds), 5);
    assert.equal(cacheLifetimeSeconds('max-age=100', null, { ...bounds, maxSeconds: 2 }), 2);
  });

  it('falls back to the short default for no-store, no-cache, no max-age or garbage', () => {
    for (const cc of [
      null,
      '',
      'no-store',
      'max-age=300, no-store',
      'no-cache',
      'public',
      'max-age=abc',
      'max-age=-5',
    ]) {
      assert.equal(cacheLifetimeSeconds(cc, null, bounds), 60, String(cc));
    }
  });

  it('treats conflicting max-age directives as stale (the floor)', () => {
    assert.equal(cacheLifetimeSeconds('max-age=300, max-age=600', null, bounds), 5);
  });
});

describe('TokenBucket', () => {
  it('allows capacity takes at once, then refills at capacity per period', () => {
    const bucket = new TokenBucket(6, 60, 0);
    let taken = 0;
    for (let i = 0; i < 100; i++) if (bucket.tryTake(0)) taken++;
    assert.equal(taken, 6);
    assert.equal(bucket.tryTake(9_000), false);
    assert.equal(bucket.tryTake(10_000), true);
    assert.equal(bucket.tryTake(10_000), false);
    // A long pause refills to capacity, not beyond.
    taken = 0;
    for (let i = 0; i < 100; i++) if (bucket.tryTake(3_600_000)) taken++;
    assert.equal(taken, 6);
  });

  it('gains nothing from a clock that goes backwards', () => {
    const bucket = new TokenBucket(1, 60, 1_000_000);
    assert.equal(bucket.tryTake(1_000_000), true);
    assert.equal(bucket.tryTake(0), false);
    assert.equal(bucket.tryTake(1_000_000), false);
  });

  it('capacity 0 never allows', () => {
    const bucket = new TokenBucket(0, 60, 0);
    assert.equal(bucket.tryTake(10 ** 9), false);
  });
});
