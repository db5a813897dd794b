import { strict as assert } from 'node:assert';
import pino from 'pino';
import type { DataSource } from 'typeorm';
import { AuditStore, StoreAuditLog } from '../../../src/audit';
import { DeniedRecorder, SignActivityAggregator } from '../../../src/audit/activity';
import { auditChainLength } from '../../../src/audit/query';
import { verifyAuditChain } from '../../../src/audit/verify';
import type { AuditEventType } from '../../../src/policy/audit-events';
import { FakeClock } from '../../../src/policy/clock';
import { KeywardenError } from '../../../src/policy/errors';
import { openStore } from '../../../src/store/data-source';
import { SqlStore } from '../../../src/store/sql-store';

describe('request auditing on a real (in-memory SQLite) audit chain', () => {
  let ds: DataSource;
  let clock: FakeClock;
  let ctx: {
    audit: StoreAuditLog;
    store: SqlStore;
    auditRecords: AuditStore;
    clock: FakeClock;
    log: pino.Logger;
    keys: SqlStore['keys'];
  };
  const records = (type?: string) => new AuditStore(ds).tail({ limit: 10_000, ...(type ? { type } : {}) });

  beforeEach(async () => {
    ds = await openStore('sqlite::memory:');
    clock = new FakeClock(Date.UTC(2026, 0, 1, 12, 0, 0));
    const log = pino({ level: 'silent' });
    const audit = new StoreAuditLog(ds, log, clock);
    const store = new SqlStore(ds, (m, e) => audit.appendIn(m, e));
    ctx = { audit, store, auditRecords: new AuditStore(ds), clock, log, keys: store.keys };
  });
  afterEach(async () => ds.destroy());

  it('aggregates signs per key, client and minute; writes only finished minutes; first and last jti kept', async () => {
    const agg = new SignActivityAggregator(ctx);
    for (let i = 0; i < 50; i++) agg.note({ scope: 'consumer', kid: 'k1', client: 'billing', jti: `j${i}` });
    agg.note({ scope: 'consumer', kid: 'k1', client: 'gateway', jti: 'g0' });
    assert.equal(await agg.flush(), 0, 'the current minute is not written yet');
    assert.equal((await records()).length, 0);
    clock.advanceSeconds(60);
    agg.note({ scope: 'consumer', kid: 'k1', client: 'billing', jti: 'next-minute' });
    assert.equal(await agg.flush(), 2);
    const rows = await records('sign.activity');
    const billing = rows.find((r) => r.actor === 'client:billing')!;
    assert.equal(billing.kid, 'k1');
    assert.equal(billing.scope, 'consumer');
    assert.deepEqual(
      [billing.data.count, billing.data.firstJti, billing.data.lastJti, billing.data.minute],
      [50, 'j0', 'j49', '2026-01-01T12:00:00.000Z'],
    );
    assert.equal(rows.find((r) => r.actor === 'client:gateway')?.data.count, 1);
    await agg.stop();
    assert.equal((await records('sign.activity')).length, 3, 'stop() writes the unfinished minute');
    assert.equal(agg.pending, 0);
    assert.ok(
      (await verifyAuditChain({ ...ctx, backend: () => Promise.reject(new Error('x')) }, { online: false }))
        .ok,
    );
  });

  it('counts into a fresh bucket after its minute was written, and alternating clients apart', async () => {
    const agg = new SignActivityAggregator(ctx);
    const note = (client: string, jti: string) => agg.note({ scope: 'consumer', kid: 'k1', client, jti });
    note('billing', 'b0');
    note('gateway', 'g0');
    note('billing', 'b1');
    await agg.flush(true);
    // Same minute, same key and client as the last token: the written bucket must not be reused.
    note('billing', 'b2');
    note('billing', 'b3');
    await agg.stop();
    const rows = (await records('sign.activity')).filter((r) => r.actor === 'client:billing');
    assert.deepEqual(rows.map((r) => [r.data.count, r.data.firstJti, r.data.lastJti]).sort(), [
      [2, 'b0', 'b1'],
      [2, 'b2', 'b3'],
    ]);
    const gateway = (await records('sign.activity')).filter((r) => r.actor === 'client:gateway');
    assert.deepEqual(
      gateway.map((r) => r.data.count),
      [1],
    );
  });

  it('rate-limits denied-request records per client-or-IP and overall, then writes one summary per subject', async () => {
    const rec = new DeniedRecorder(ctx, { perSubjectPerMinute: 3, totalPerMinute: 5 });
    for (let i = 0; i < 100; i++) {
      rec.recordDenied({
        status: 401,
        ip: '203.0.113.7',
        route: 'POST /v1/scopes/:scope/sign',
        reason: 'bad-credentials',
      });
    }
    for (let i = 0; i < 10; i++) {
      rec.recordDenied({
        status: 403,
        ip: '198.51.100.1',
        client: 'billing',
        scope: 'consumer',
        route: 'POST /v1/scopes/:scope/sign',
        reason: 'no-sign-grant',
      });
    }
    rec.recordDenied({
      status: 401,
      ip: '192.0.2.9',
      route: 'POST /v1/scopes/:scope/verify',
      reason: 'missing-credentials',
    });
    await rec.flush();
    const denied = await records('access.denied');
    assert.deepEqual(
      denied.map((r) => r.actor),
      ['ip:203.0.113.7', 'ip:203.0.113.7', 'ip:203.0.113.7', 'client:billing', 'client:billing'],
      'at most 3 per subject and 5 in all',
    );
    assert.equal((await records('access.denied-summary')).length, 0, 'summaries wait for the minute to end');
    clock.advanceSeconds(61);
    await rec.flush();
    const summaries = await records('access.denied-summary');
    const bySubject = Object.fromEntries(summaries.map((r) => [r.actor, r.data.suppressed]));
    assert.deepEqual(bySubject, { 'ip:203.0.113.7': 97, 'client:billing': 8, 'ip:192.0.2.9': 1 });
    // A new minute has a fresh allowance.
    rec.recordDenied({ status: 401, ip: '203.0.113.7', route: 'x', reason: 'bad-credentials' });
    await rec.stop();
    assert.equal((await records('access.denied')).length, 6);
  });

  it('records each event with its actor, in the store transaction it was given (rolled back with it)', async () => {
    await ctx.audit.record({
      type: 'client.created',
      actor: 'cli:ops@host',
      data: { name: 'billing', secret: 'must-not-be-stored' },
    });
    await assert.rejects(
      ctx.store.transaction(async (tx) => {
        await tx.audit.record({ type: 'client.removed', actor: 'cli:ops@host' });
        throw new Error('roll back');
      }),
      /roll back/,
    );
    const rows = await records();
    assert.deepEqual(
      rows.map((r) => [r.type, r.actor]),
      [['client.created', 'cli:ops@host']],
    );
    assert.equal(rows[0]!.data.secret, '[redacted]');
    assert.equal(await auditChainLength(ctx), 1, 'the rolled-back record left no trace, not even a seq');
    // A type outside the catalogue (policy/audit-events.ts) is a bug: refused, nothing written.
    await assert.rejects(
      ctx.audit.record({ type: 'Bad Name' as AuditEventType, actor: 'x' }),
      (e) => e instanceof KeywardenError && e.code === 'INTERNAL',
    );
    assert.equal(await auditChainLength(ctx), 1);
  });

  it('is append-only at the database: UPDATE and DELETE of records are refused', async () => {
    await ctx.audit.record({ type: 'client.created', actor: 'cli:ops@host' });
    await assert.rejects(ds.query(`UPDATE audit_records SET actor = 'someone else'`), /append-only/);
    await assert.rejects(ds.query('DELETE FROM audit_records'), /append-only/);
    assert.equal((await records())[0]?.actor, 'cli:ops@host');
  });
});
