import * as assert from 'node:assert/strict';
import type { KeyRecord } from '../../../src/policy/key';
import { nextActions, nextDecisionAt, pickSigningKey } from '../../../src/policy/next-actions';
import { planRotations } from '../../../src/policy/plan';
import { at, key, policy, T } from './rotation-fixture';

const kinds = (keys: KeyRecord[], s: number) =>
  nextActions(policy, keys, at(s)).map((a) => a.kind + (a.kind === 'create' ? `:${a.reason}` : ''));

describe('nextActions: the reconcile decision', () => {
  it('creates an immediately active key when the scope has none', () => {
    const [a] = nextActions(policy, [], at(0));
    assert.equal(a?.kind, 'create');
    assert.ok(a?.kind === 'create' && a.reason === 'no-active-key');
    assert.ok(a?.kind === 'create' && a.timeline.activateAt.getTime() === at(0).getTime());
  });

  it('does nothing until retireAt - prepublish, then creates the successor activating at retireAt', () => {
    const k = key(0); // active 0..1000
    assert.deepEqual(kinds([k], 899.999), []);
    const [a] = nextActions(policy, [k], at(900));
    assert.ok(a?.kind === 'create' && a.reason === 'rotation-due');
    assert.equal(a.timeline.activateAt.getTime(), k.retireAt.getTime()); // no gap, no overlap
    assert.equal(a.timeline.publishAt.getTime(), at(900).getTime()); // published a full prepublish first
  });

  it('is idempotent: a pending successor suppresses another creation', () => {
    const k = key(0);
    const succ = key(1000);
    assert.deepEqual(kinds([k, succ], 900), []);
    assert.deepEqual(kinds([k, succ], 999), []);
  });

  it('catches up after downtime: all keys expired gives one immediate key, never a revived one', () => {
    const old = key(0);
    const acts = nextActions(policy, [old], at(50_000));
    const create = acts.find((a) => a.kind === 'create');
    assert.ok(create?.kind === 'create' && create.reason === 'no-active-key');
    assert.equal(create.timeline.activateAt.getTime(), at(50_000).getTime());
    assert.ok(acts.some((a) => a.kind === 'destroy' && a.keyId === old.id));
  });

  it('treats a revoked key as unusable, replaces it at once and destroys its object at once', () => {
    assert.deepEqual(kinds([key(0, { revokedAt: at(10) })], 20), ['create:no-active-key', 'destroy']);
  });

  it('destroys backend objects destroyAfter past expiry, at the instant of revocation, once', () => {
    const k = key(0); // expires 1200
    assert.ok(!kinds([k, key(1000)], 1249).includes('destroy'));
    assert.ok(kinds([k, key(1000)], 1250).includes('destroy'));
    assert.ok(!kinds([{ ...k, destroyedAt: at(1250) }, key(1000)], 1300).includes('destroy'));
    // Revocation is final in the backend: no destroyAfter grace for a revoked key's object.
    assert.ok(!kinds([key(0, { revokedAt: at(10) }), key(0)], 9).includes('destroy'));
    assert.ok(kinds([key(0, { revokedAt: at(10) }), key(0)], 10).includes('destroy'));
    assert.ok(!kinds([key(0, { revokedAt: at(10), destroyedAt: at(10) }), key(0)], 60).includes('destroy'));
  });

  it('a late successor still activates exactly when its predecessor retires (no gap), published for the time left', () => {
    const k = key(0); // retires at 1000; successor due at 900
    const [a] = nextActions(policy, [k], at(960));
    assert.ok(a?.kind === 'create' && a.reason === 'rotation-due');
    assert.equal(a.timeline.activateAt.getTime(), k.retireAt.getTime());
    assert.equal(a.timeline.publishAt.getTime(), at(960).getTime());
    assert.ok(
      (a.timeline.expiresAt.getTime() - a.timeline.publishAt.getTime()) / 1000 <=
        policy.maxKeyLifetimeSeconds,
    );
  });

  it('creates nothing while a half-made key is pending resolution (no second successor after a crash)', () => {
    const k = key(0);
    const halfMade = key(1000, { status: 'generating', kid: null });
    assert.deepEqual(kinds([k, halfMade], 950), ['resolve-generating']);
    assert.deepEqual(kinds([halfMade], 5), ['resolve-generating']);
  });

  it('resolves rows left generating by a crash', () => {
    assert.deepEqual(kinds([key(0, { status: 'generating' }), key(0)], 1)[0], 'resolve-generating');
  });

  it('signing picks the active key with the latest activateAt', () => {
    const a = key(0);
    const b = key(500); // an operator rotation: active from 500 while a is still active
    assert.equal(pickSigningKey([a, b], at(499))?.id, a.id);
    assert.equal(pickSigningKey([a, b], at(500))?.id, b.id);
    assert.equal(pickSigningKey([key(0, { revokedAt: at(1) })], at(2)), undefined);
  });

  it('nextDecisionAt names the instant the next action falls due', () => {
    const k = key(0);
    assert.equal(nextDecisionAt(policy, [k], at(10))?.getTime(), at(900).getTime()); // successor due
    assert.equal(nextDecisionAt(policy, [k, key(1000)], at(900))?.getTime(), at(1000).getTime()); // k retires
    assert.equal(nextDecisionAt(policy, [], at(0)), null);
  });

  it('keeps every lifetime within maxKeyLifetime, prepublishes every successor and never leaves a gap, over 50 rotations', () => {
    let keys: KeyRecord[] = [];
    let t = 0;
    let steps = 0;
    while (t < 60_000 && steps++ < 10_000) {
      for (const a of nextActions(policy, keys, at(t))) {
        if (a.kind === 'create') keys.push({ ...key(0), id: `sim${t}`, ...a.timeline, createdAt: at(t) });
        if (a.kind === 'destroy')
          keys = keys.map((k) => (k.id === a.keyId ? { ...k, destroyedAt: at(t) } : k));
      }
      assert.ok(pickSigningKey(keys, at(t)), `no signing key at ${t}`);
      // The scheduler wakes at the next decision instant, or on its heartbeat, whichever is first.
      const next = nextDecisionAt(policy, keys, at(t));
      t = Math.min(t + 60, next ? (next.getTime() - T) / 1000 : Infinity);
    }
    assert.ok(keys.length >= 50, `${keys.length} keys`);
    keys.forEach((k, i) => {
      assert.ok((k.expiresAt.getTime() - k.publishAt.getTime()) / 1000 <= policy.maxKeyLifetimeSeconds);
      if (i > 0) {
        assert.equal((k.activateAt.getTime() - k.publishAt.getTime()) / 1000, policy.prepublishSeconds);
        assert.equal(
          k.activateAt.getTime(),
          keys[i - 1]!.retireAt.getTime(),
          'successor activates as its predecessor retires',
        );
      }
    });
  });
});

describe('planRotations', () => {
  it('lists the live key and the next N rotations back to back, touching nothing', () => {
    const k = key(0);
    const rows = planRotations(policy, [k], at(10), 3);
    assert.deepEqual(
      rows.map((r) => [r.origin, (r.activateAt.getTime() - T) / 1000, (r.publishAt.getTime() - T) / 1000]),
      [
        ['existing', 0, -100],
        ['planned', 1000, 900],
        ['planned', 2000, 1900],
        ['planned', 3000, 2900],
      ],
    );
    assert.equal(rows[1]?.destroyAt.getTime(), at(1000 + 1000 + 200 + 50).getTime());
  });

  it('plans an immediate first key for an empty scope', () => {
    const rows = planRotations(policy, [], at(0), 2);
    assert.equal(rows.length, 2);
    assert.equal(rows[0]?.activateAt.getTime(), at(0).getTime());
    assert.equal(rows[1]?.activateAt.getTime(), at(1000).getTime());
  });
});
