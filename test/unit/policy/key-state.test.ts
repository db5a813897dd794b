import * as assert from 'node:assert/strict';
import {
  canSign,
  canVerify,
  effectiveState,
  isPublished,
  nextStateChangeAt,
} from '../../../src/policy/key-state';

const T = Date.UTC(2026, 0, 1);
const at = (s: number) => new Date(T + s * 1000);
const key = {
  publishAt: at(0),
  activateAt: at(100),
  retireAt: at(200),
  expiresAt: at(300),
  revokedAt: null as Date | null,
};

describe('effectiveState (I2: a pure function of timestamps and now)', () => {
  const cases: [number, string][] = [
    [0, 'pending'],
    [99.999, 'pending'],
    [100, 'active'], // activateAt is inclusive
    [199.999, 'active'],
    [200, 'retired'], // retireAt is inclusive
    [299.999, 'retired'],
    [300, 'expired'], // at expiresAt nothing signs or verifies (I1)
    [1e9, 'expired'],
  ];
  for (const [s, state] of cases) {
    it(`is ${state} at +${s}s`, () => assert.equal(effectiveState(key, at(s)), state));
  }

  it('is revoked from revokedAt on, in every phase, and not before', () => {
    const revoked = { ...key, revokedAt: at(150) };
    assert.equal(effectiveState(revoked, at(149.999)), 'active');
    assert.equal(effectiveState(revoked, at(150)), 'revoked');
    assert.equal(effectiveState(revoked, at(250)), 'revoked');
    assert.equal(effectiveState({ ...key, revokedAt: at(10) }, at(50)), 'revoked');
  });

  it('expired wins over pending for a key whose timestamps are corrupt', () => {
    assert.equal(effectiveState({ ...key, activateAt: at(500) }, at(400)), 'expired');
  });

  it('publishes pending/active/retired; signs only when active; verifies active/retired', () => {
    assert.deepEqual(
      (['pending', 'active', 'retired', 'expired', 'revoked'] as const).map((s) => [
        isPublished(s),
        canSign(s),
        canVerify(s),
      ]),
      [
        [true, false, false],
        [true, true, true],
        [true, false, true],
        [false, false, false],
        [false, false, false],
      ],
    );
  });

  it('nextStateChangeAt is the next boundary after now, or null', () => {
    assert.deepEqual(nextStateChangeAt(key, at(0)), at(100));
    assert.deepEqual(nextStateChangeAt(key, at(100)), at(200));
    assert.deepEqual(nextStateChangeAt(key, at(250)), at(300));
    assert.equal(nextStateChangeAt(key, at(300)), null);
    assert.deepEqual(nextStateChangeAt({ ...key, revokedAt: at(120) }, at(110)), at(120));
  });
});
