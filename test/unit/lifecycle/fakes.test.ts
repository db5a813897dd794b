/**
 * The fakes of test/helpers/fakes.ts keep the semantics use cases rely on (src/lifecycle/ports.ts,
 * src/store/key-repository.ts): copies, not aliases; a key set version that moves on every key
 * write but `last_state`; conditional writes; all-or-nothing transactions; the lock.
 */
import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { KeyRecord } from '../../../src/policy/key';
import { MemoryAuditLog, MemoryBackend, MemoryScopeLock, MemoryStore, isCode } from '../../helpers/fakes';

const T0 = new Date(Date.UTC(2026, 0, 1));

function row(overrides: Partial<KeyRecord> = {}): KeyRecord {
  const id = randomUUID();
  return {
    id,
    kid: null,
    scope: 'consumer',
    alg: 'ES256',
    status: 'generating',
    backendRef: { backend: 'hsm', ref: { id: 'aa', label: `keywarden:consumer:${id}` } },
    publicJwk: null,
    publishAt: T0,
    activateAt: T0,
    retireAt: new Date(T0.getTime() + 600_000),
    expiresAt: new Date(T0.getTime() + 900_000),
    revokedAt: null,
    revokedReason: null,
    destroyedAt: null,
    createdAt: T0,
    createdBy: 'test',
    ...overrides,
  };
}

async function readyRow(store: MemoryStore, kid: string, overrides: Partial<KeyRecord> = {}) {
  const r = row(overrides);
  await store.keys.insertGenerating(r, T0);
  await store.keys.completeGenerating(
    r.id,
    { kid, publicJwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }, backendRef: r.backendRef },
    T0,
  );
  return (await store.keys.findById(r.id)) as KeyRecord;
}

describe('fakes: MemoryStore', () => {
  it('hands out copies: mutating a returned or inserted record changes nothing stored', async () => {
    const store = new MemoryStore();
    const r = row();
    await store.keys.insertGenerating(r, T0);
    r.scope = 'enterprise';
    r.expiresAt.setTime(0);
    const read = (await store.keys.findById(r.id)) as KeyRecord;
    assert.equal(read.scope, 'consumer');
    assert.equal(read.expiresAt.getTime(), T0.getTime() + 900_000);
    read.backendRef.ref.id = 'ff';
    read.retireAt = new Date(0);
    const listed = (await store.keys.listAll())[0] as KeyRecord;
    assert.equal(listed.backendRef.ref.id, 'aa');
    assert.equal(listed.retireAt.getTime(), T0.getTime() + 600_000);
    const { keys } = await store.keys.readIfChanged(null);
    keys![0]!.revokedAt = new Date();
    assert.equal((await store.keys.findById(r.id))?.revokedAt, null);
  });

  it('moves the key set version on every key write but last_state, and only when a row changed', async () => {
    const store = new MemoryStore();
    const seen = new Set<string>([store.version]);
    const moved = (what: string) => {
      assert.ok(!seen.has(store.version), `${what} did not change the version`);
      seen.add(store.version);
    };
    const r = row();
    await store.keys.insertGenerating(r, T0);
    moved('insertGenerating');
    await store.keys.completeGenerating(
      r.id,
      { kid: 'kid-1', publicJwk: { kty: 'OKP', crv: 'Ed25519', x: 'x' }, backendRef: r.backendRef },
      T0,
    );
    moved('completeGenerating');
    const before = store.version;
    await store.keys.setLastState(r.id, 'active');
    assert.equal(store.version, before, 'last_state must not change the version');
    assert.deepEqual(await store.keys.lastStates('consumer'), new Map([[r.id, 'active']]));
    assert.equal(await store.keys.revoke(r.id, T0, 'leaked'), true);
    moved('revoke');
    const afterRevoke = store.version;
    assert.equal(await store.keys.revoke(r.id, new Date(T0.getTime() + 1), 'again'), false);
    assert.equal(store.version, afterRevoke, 'a revoke that changed nothing moved the version');
    assert.equal((await store.keys.findById(r.id))?.revokedReason, 'leaked', 'the first revocation stays');
    await store.keys.markDestroyed(r.id, T0);
    moved('markDestroyed');
    await store.keys.markDestroyed(r.id, new Date(T0.getTime() + 5));
    assert.equal((await store.keys.findById(r.id))?.destroyedAt?.getTime(), T0.getTime());
    store.tamper.update(r.id, { scope: 'enterprise' });
    moved('a direct row write');
    // readIfChanged: nothing when the version is known.
    assert.equal((await store.keys.readIfChanged(store.version)).keys, null);
    assert.equal((await store.keys.readIfChanged(before)).keys?.length, 1);
  });

  it('completes only generating rows, deletes only generating rows, and keeps kids unique', async () => {
    const store = new MemoryStore();
    const a = await readyRow(store, 'kid-a');
    await assert.rejects(
      store.keys.completeGenerating(
        a.id,
        { kid: 'kid-z', publicJwk: a.publicJwk, backendRef: a.backendRef },
        T0,
      ),
      isCode('STORE_ERROR'),
    );
    await store.keys.deleteGenerating(a.id);
    assert.ok(await store.keys.findById(a.id), 'a ready row was deleted as generating');
    const b = row();
    await store.keys.insertGenerating(b, T0);
    await assert.rejects(
      store.keys.completeGenerating(
        b.id,
        { kid: 'kid-a', publicJwk: a.publicJwk, backendRef: b.backendRef },
        T0,
      ),
      /UNIQUE/,
    );
    await assert.rejects(store.keys.insertGenerating(b, T0), /UNIQUE/);
  });

  it('finds by kid or by a unique prefix of 8+ characters; an ambiguous prefix is REQUEST_INVALID', async () => {
    const store = new MemoryStore();
    const a = await readyRow(store, 'AbCdEfGh-one');
    await readyRow(store, 'AbCdEfGh-two');
    const c = await readyRow(store, 'Zyxwvuts-three');
    assert.equal((await store.keys.findByKidOrPrefix('AbCdEfGh-one'))?.id, a.id);
    assert.equal((await store.keys.findByKidOrPrefix('Zyxwvuts'))?.id, c.id);
    assert.equal(await store.keys.findByKidOrPrefix('Zyxwvut'), null, 'a prefix under 8 characters');
    assert.equal(await store.keys.findByKidOrPrefix('zyxwvuts'), null, 'prefixes are case-sensitive');
    await assert.rejects(store.keys.findByKidOrPrefix('AbCdEfGh'), isCode('REQUEST_INVALID'));
  });

  it('lists by scope ordered by activateAt, and everything by scope then activateAt', async () => {
    const store = new MemoryStore();
    const later = row({ activateAt: new Date(T0.getTime() + 1000) });
    const earlier = row();
    const other = row({ scope: 'alpha' });
    for (const r of [later, earlier, other]) await store.keys.insertGenerating(r, T0);
    assert.deepEqual(
      (await store.keys.listByScope('consumer')).map((k) => k.id),
      [earlier.id, later.id],
    );
    assert.deepEqual(
      (await store.keys.listAll()).map((k) => k.id),
      [other.id, earlier.id, later.id],
    );
  });

  it('commits a transaction’s key writes and audit records together', async () => {
    const audit = new MemoryAuditLog();
    const store = new MemoryStore(audit);
    const r = row();
    const version = store.version;
    await store.transaction(async (tx) => {
      await tx.keys.insertGenerating(r, T0);
      await tx.audit.record({ type: 'key.generating', actor: 'test', data: { keyId: r.id } });
      // Its own write is visible inside, nothing outside before the commit.
      assert.ok(await tx.keys.findById(r.id));
      assert.equal(await store.keys.findById(r.id), null);
      assert.deepEqual(audit.events, []);
      assert.equal(store.version, version);
    });
    assert.ok(await store.keys.findById(r.id));
    assert.deepEqual(audit.types(), ['key.generating']);
    assert.notEqual(store.version, version);
  });

  it('rolls a transaction back whole when it throws, also when the audit append is what fails', async () => {
    const audit = new MemoryAuditLog();
    const store = new MemoryStore(audit);
    const existing = await readyRow(store, 'kid-existing');
    const version = store.version;
    const r = row();
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.keys.insertGenerating(r, T0);
        await tx.keys.revoke(existing.id, T0, 'x');
        await tx.audit.record({ type: 'key.generating', actor: 'test' });
        throw new Error('later step failed');
      }),
      /later step failed/,
    );
    audit.failWhen = (e) => e.type === 'key.revoked';
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.keys.revoke(existing.id, T0, 'x');
        await tx.audit.record({ type: 'key.revoked', actor: 'test' });
      }),
      /audit append failed/,
    );
    assert.equal(await store.keys.findById(r.id), null);
    assert.equal((await store.keys.findById(existing.id))?.revokedAt, null);
    assert.deepEqual(audit.events, []);
    assert.equal(store.version, version);
    assert.deepEqual(store.stats, { commits: 0, rollbacks: 2 });
  });

  it('keeps a write made outside a transaction while it was open', async () => {
    const store = new MemoryStore();
    const a = await readyRow(store, 'kid-a');
    const b = await readyRow(store, 'kid-b');
    await store.transaction(async (tx) => {
      await tx.keys.revoke(a.id, T0, 'in tx');
      await store.keys.markDestroyed(b.id, T0);
    });
    assert.ok((await store.keys.findById(a.id))?.revokedAt);
    assert.ok((await store.keys.findById(b.id))?.destroyedAt);
  });
});

describe('fakes: MemoryScopeLock', () => {
  it('runs one holder per scope, is not re-entrant, and frees the scope when fn throws', async () => {
    const lock = new MemoryScopeLock();
    const inner = await lock.tryRun('consumer', async () => ({
      same: await lock.tryRun('consumer', async () => 1),
      other: await lock.tryRun('enterprise', async () => 2),
    }));
    assert.deepEqual(inner, { ran: true, value: { same: { ran: false }, other: { ran: true, value: 2 } } });
    await assert.rejects(
      lock.tryRun('consumer', async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(lock.isHeld('consumer'), false);
    const release = lock.hold('consumer');
    assert.deepEqual(await lock.tryRun('consumer', async () => 3), { ran: false });
    release();
    assert.deepEqual(await lock.tryRun('consumer', async () => 3), { ran: true, value: 3 });
    assert.equal(lock.refusals.get('consumer'), 2);
  });
});

describe('fakes: MemoryBackend switches', () => {
  it('down: every operation throws BACKEND_UNAVAILABLE and health is not ok; failNext fails one call', async () => {
    const b = new MemoryBackend('hsm');
    const ref = b.planKey({ scope: 'consumer', keyId: 'k1' });
    const req = { alg: 'ES256' as const, scope: 'consumer', keyId: 'k1', notBefore: T0, notAfter: T0 };
    b.down = true;
    await assert.rejects(b.generate(ref, req), isCode('BACKEND_UNAVAILABLE'));
    await assert.rejects(b.inventory(), isCode('BACKEND_UNAVAILABLE'));
    await assert.rejects(b.destroy(ref), isCode('BACKEND_UNAVAILABLE'));
    assert.equal((await b.health()).ok, false);
    b.down = false;
    await b.generate(ref, req);
    b.failNext('sign');
    await assert.rejects(b.sign(ref, 'ES256', Buffer.from('a.b')), isCode('BACKEND_UNAVAILABLE'));
    assert.equal((await b.sign(ref, 'ES256', Buffer.from('a.b'))).length, 64);
    await assert.rejects(b.sign(ref, 'ES384', Buffer.from('a.b')), isCode('BACKEND_MECHANISM_UNSUPPORTED'));
    await assert.rejects(
      b.sign({ ...ref, backend: 'other' }, 'ES256', Buffer.from('a.b')),
      isCode('BACKEND_ERROR'),
    );
    assert.deepEqual([b.calls.generate, b.calls.sign, b.calls.inventory], [2, 4, 1]);
    const [found] = await b.inspectKeys([{ ref, alg: 'ES256' }]);
    assert.ok(found?.status === 'found' && found.facts.validity.precision === 'second');
    const [wrongAlg] = await b.inspectKeys([{ ref, alg: 'RS256' }]);
    assert.equal(wrongAlg?.status, 'unreadable');
  });
});
