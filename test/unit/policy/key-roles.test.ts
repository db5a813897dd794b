import * as assert from 'node:assert/strict';
import { shownKeyStates } from '../../../src/policy/key-roles';
import { signingCoveredUntil } from '../../../src/policy/next-actions';
import { scopeStatus } from '../../../src/policy/scope-status';
import { timelineForNewKey } from '../../../src/policy/timeline';
import { at, key, policy } from './rotation-fixture';

describe('operator rotation never opens a gap (#18 item 4)', () => {
  it('signingCoveredUntil follows the chain of overlapping or adjoining active windows', () => {
    const a = key(0); // active 0..1000
    assert.equal(signingCoveredUntil([a], at(10)).getTime(), at(1000).getTime());
    assert.equal(signingCoveredUntil([a, key(1000)], at(10)).getTime(), at(2000).getTime());
    // A pending key after a gap does not extend the chain.
    assert.equal(signingCoveredUntil([a, key(1001)], at(10)).getTime(), at(1000).getTime());
    // A scheduled revocation ends a key's part; no active key: now.
    assert.equal(signingCoveredUntil([key(0, { revokedAt: at(500) })], at(10)).getTime(), at(500).getTime());
    assert.equal(signingCoveredUntil([a], at(1000)).getTime(), at(1000).getTime());
  });

  it('in the last prepublish window with no successor, the new key takes over when the current one retires', () => {
    const a = key(0); // retires at 1000, prepublish 100
    const now = at(970);
    const tl = timelineForNewKey(policy, now, {
      immediate: false,
      signingCoveredUntil: signingCoveredUntil([a], now),
    });
    assert.equal(tl.activateAt.getTime(), a.retireAt.getTime());
    assert.equal(tl.publishAt.getTime(), now.getTime());
  });

  it('earlier, it keeps the full prepublish', () => {
    const a = key(0);
    const now = at(300);
    const tl = timelineForNewKey(policy, now, {
      immediate: false,
      signingCoveredUntil: signingCoveredUntil([a], now),
    });
    assert.equal(tl.activateAt.getTime(), at(400).getTime());
  });
});

describe('shown key states: one active key per scope', () => {
  it('shows only the signing key as active; the others in their active window as superseded', () => {
    const a = key(0); // active 0..1000
    const b = key(400); // active 400..1400: signs from 400 (later activateAt)
    const s = shownKeyStates([a, b], at(500));
    assert.equal(s.get(a.id), 'superseded');
    assert.equal(s.get(b.id), 'active');
    assert.equal(shownKeyStates([a, b], at(300)).get(b.id), 'pending');
    assert.equal(shownKeyStates([a, b], at(300)).get(a.id), 'active');
    assert.equal(shownKeyStates([a, b], at(1100)).get(a.id), 'retired');
  });

  it('a row that may not sign (refused) is never the active one', () => {
    const a = key(0);
    const b = key(400);
    const s = shownKeyStates([a, b], at(500), (k) => k.id !== b.id);
    assert.equal(s.get(a.id), 'active');
    assert.equal(s.get(b.id), 'superseded');
  });

  it('scopeStatus counts keys by shown state, with at most one active', () => {
    const st = scopeStatus(policy, [key(0), key(300), key(400)], at(500));
    assert.equal(st.keysByState.active, 1);
    assert.equal(st.keysByState.superseded, 2);
    assert.equal(st.keysByState.pending, 0);
  });
});
