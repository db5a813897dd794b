import * as assert from 'node:assert/strict';
import { scopeStatus } from '../../../src/policy/scope-status';
import { at, key, policy } from './rotation-fixture';

describe('scopeStatus: the lifecycle gauges of one scope', () => {
  it('reports no signing-key durations for a scope without keys', () => {
    assert.deepEqual(scopeStatus(policy, [], at(0)), {
      hasActiveKey: false,
      activeKeyAgeSeconds: null,
      activeKeyRetiresInSeconds: null,
      nextRotationInSeconds: null,
      publishedKeys: 0,
      keysByState: { pending: 0, active: 0, superseded: 0, retired: 0, expired: 0, revoked: 0 },
    });
  });

  it('a pending key is published but not an active key, and gives no age', () => {
    const s = scopeStatus(policy, [key(0)], at(-50));
    assert.equal(s.hasActiveKey, false);
    assert.equal(s.publishedKeys, 1);
    assert.equal(s.activeKeyAgeSeconds, null);
    assert.equal(s.nextRotationInSeconds, null);
  });

  it('age grows and the times to rotation and retirement shrink with the clock', () => {
    const k = key(0);
    const a = scopeStatus(policy, [k], at(10));
    const b = scopeStatus(policy, [k], at(250.5));
    assert.equal(a.hasActiveKey, true);
    assert.equal(a.activeKeyAgeSeconds, 10);
    assert.equal(b.activeKeyAgeSeconds, 250.5);
    // Retires at 1000; the successor is due a prepublish (100) before that.
    assert.equal(a.activeKeyRetiresInSeconds, 990);
    assert.equal(b.activeKeyRetiresInSeconds, 749.5);
    assert.equal(a.nextRotationInSeconds, 890);
    assert.equal(b.nextRotationInSeconds, 649.5);
    assert.equal(a.publishedKeys, 1);
  });

  it('goes negative when the successor is overdue, and moves on once it exists', () => {
    const k = key(0);
    assert.equal(scopeStatus(policy, [k], at(950)).nextRotationInSeconds, -50);
    const successor = key(1000);
    const s = scopeStatus(policy, [k, successor], at(950));
    // The next rotation is now the successor's: it retires at 2000.
    assert.equal(s.nextRotationInSeconds, 2000 - 100 - 950);
    assert.equal(s.publishedKeys, 2);
    // The current key still signs until it retires.
    assert.equal(s.activeKeyAgeSeconds, 950);
    assert.equal(s.activeKeyRetiresInSeconds, 50);
  });

  it('after the hand-over the successor is the signing key; the retired key stays published', () => {
    const s = scopeStatus(policy, [key(0), key(1000)], at(1010));
    assert.equal(s.activeKeyAgeSeconds, 10);
    assert.equal(s.activeKeyRetiresInSeconds, 990);
    assert.equal(s.publishedKeys, 2);
    // The retired key expires at 1200 and leaves the JWKS.
    assert.equal(scopeStatus(policy, [key(0), key(1000)], at(1200)).publishedKeys, 1);
  });

  it('ignores revoked keys and generating rows', () => {
    const revoked = key(0, { revokedAt: at(5) });
    const generating = key(0, { status: 'generating' });
    const s = scopeStatus(policy, [revoked, generating], at(10));
    assert.equal(s.hasActiveKey, false);
    assert.equal(s.publishedKeys, 0);
    assert.equal(s.activeKeyAgeSeconds, null);
  });

  it('with two active keys, the one that signs (latest activateAt) is reported', () => {
    // An immediate replacement activated at 300 while the first still runs to 1000.
    const first = key(0);
    const replacement = key(300);
    const s = scopeStatus(policy, [first, replacement], at(400));
    assert.equal(s.activeKeyAgeSeconds, 100);
    assert.equal(s.activeKeyRetiresInSeconds, 900);
    assert.equal(s.nextRotationInSeconds, 1300 - 100 - 400);
  });
});
