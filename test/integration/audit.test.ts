/**
 * The hash-chained audit log on a real SoftHSM2 token, driven by a FakeClock through the real
 * lifecycle (reconcile, revoke, rotate), once on SQLite and once on a real PostgreSQL server.
 * Tampering is done the way an attacker with database access would: raw SQL, with the
 * append-only triggers dropped first, and hashes recomputed where that hides the edit best.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import pino from 'pino';
import type { DataSource } from 'typeorm';
import { AuditStore, recordHash, type SignedMarker } from '../../src/audit';
import { signStatement, type StatementSigner } from '../../src/audit/signature';
import { SignActivityAggregator } from '../../src/audit/activity';
import { CHECKPOINT_TYPE, checkpointAudit, type CheckpointData } from '../../src/audit/checkpoint';
import { auditCheckpointJob } from '../../src/audit/jobs';
import { AUDIT_SCOPE } from '../../src/policy/audit-key';
import { pruneAudit } from '../../src/audit/prune';
import { auditChainLength } from '../../src/audit/query';
import { verifyAuditChain, type AuditVerifyReport } from '../../src/audit/verify';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { revokeKey } from '../../src/lifecycle/revoke-key';
import { rotateScope } from '../../src/lifecycle/rotate-scope';
import { signToken } from '../../src/lifecycle/sign-token';
import { openRuntime, storeAuditLog, type Runtime } from '../../src/main';
import { FakeClock } from '../../src/policy/clock';
import { hasCode } from '../../src/policy/errors';
import type { PublicJwk } from '../../src/policy/key';
import { pickSigningKey } from '../../src/policy/next-actions';
import type { KeywardenConfig } from '../../src/policy/scope';
import { validateConfig } from '../../src/config/validate-config';
import { startPostgres, type TestPostgres } from '../helpers/postgres';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const T0 = Date.UTC(2026, 0, 1, 8, 0, 0);
const OPS = 'cli:ops@host';
const DAY = 86400;

interface Audited {
  rt: Runtime;
  ctx: Runtime['ctx'];
  clock: FakeClock;
  config: KeywardenConfig;
  ds: DataSource;
  store: AuditStore;
  close(): Promise<void>;
}

/** Raw SQL with `?` placeholders on either database (the attacker's tool). */
async function sql(ds: DataSource, text: string, params: unknown[] = []): Promise<unknown[]> {
  let n = 0;
  const q = ds.options.type === 'postgres' ? text.replace(/\?/g, () => `$${++n}`) : text;
  return (await ds.query(q, params)) as unknown[];
}

/** What an attacker does first: remove the append-only guard. */
async function dropGuards(ds: DataSource): Promise<void> {
  if (ds.options.type === 'postgres') {
    await ds.query('DROP TRIGGER audit_records_append_only ON audit_records');
  } else {
    await ds.query('DROP TRIGGER audit_records_no_update');
    await ds.query('DROP TRIGGER audit_records_no_delete');
  }
}

async function setData(ds: DataSource, seq: number, data: Record<string, unknown>): Promise<void> {
  await sql(ds, 'UPDATE audit_records SET data = ? WHERE seq = ?', [JSON.stringify(data), seq]);
}

/** Recomputes prev_hash/hash from `fromSeq` to the end and moves the head row along. */
async function rehashFrom(ds: DataSource, fromSeq: number): Promise<void> {
  const store = new AuditStore(ds);
  let prev = (await store.bySeq(fromSeq - 1))!.hash;
  let last = fromSeq - 1;
  for (const r of await store.range(fromSeq, 100_000)) {
    const hash = recordHash({ ...r, prevHash: prev });
    await sql(ds, 'UPDATE audit_records SET prev_hash = ?, hash = ? WHERE seq = ?', [prev, hash, r.seq]);
    prev = hash;
    last = r.seq;
  }
  await sql(ds, 'UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1', [last, prev]);
}

/** A software ES256 key posing as an audit key: what an attacker without the HSM has. */
async function softwareSigner(): Promise<{ signer: StatementSigner; jwk: PublicJwk }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = (await exportJWK(publicKey)) as PublicJwk;
  const kid = await calculateJwkThumbprint(jwk as never, 'sha256');
  const { createSign } = await import('node:crypto');
  const signer: StatementSigner = {
    kid,
    alg: 'ES256',
    async sign(input) {
      const s = createSign('sha256');
      s.update(input);
      return s.sign({ key: privateKey as unknown as CryptoKey as never, dsaEncoding: 'ieee-p1363' });
    },
  };
  return { signer, jwk };
}

const brokenAt = (r: AuditVerifyReport) => [r.break?.kind, r.break?.seq];

const ENVIRONMENTS = ['SQLite', 'PostgreSQL'] as const;

for (const env of ENVIRONMENTS) {
  describe(`audit log on ${env} (real SoftHSM2, fake clock)`, function () {
    this.timeout(180_000);
    let token: SoftHsmToken;
    let pg: TestPostgres | null = null;
    const open: Audited[] = [];

    before(async () => {
      token = await createSoftHsmToken();
      await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
      if (env === 'PostgreSQL') pg = await startPostgres();
    });

    afterEach(async () => {
      for (const a of open.splice(0)) await a.close();
    });

    after(async () => {
      await pg?.stop();
      await token?.cleanup();
    });

    async function start(audit: Record<string, unknown> = {}): Promise<Audited> {
      const url = pg
        ? await pg.createDatabase('audit')
        : `sqlite:${join(token.dir, `audit-${randomUUID()}.db`)}`;
      const doc = testConfigDocument(token, [{ name: 'consumer' }, { name: 'enterprise' }], {
        store: { url },
        audit: { checkpointEveryRecords: 5, checkpointEvery: '10m', ...audit },
      });
      const config = validateConfig(doc, { source: '<test>', baseDir: token.dir });
      const clock = new FakeClock(T0);
      const rt = await openRuntime(config, {
        log: pino({ level: 'silent' }),
        clock,
        audit: storeAuditLog(clock),
      });
      const a: Audited = {
        rt,
        ctx: rt.ctx,
        clock,
        config,
        ds: rt.ds,
        store: new AuditStore(rt.ds),
        close: () => rt.close(),
      };
      open.push(a);
      return a;
    }

    /** 40 minutes of life: scheduled rotations, an emergency revocation, an operator rotation,
     * a client added, tokens signed; checkpoints whenever due. */
    async function realisticRun(a: Audited): Promise<void> {
      const { ctx, clock } = a;
      const agg = new SignActivityAggregator(ctx);
      for (let minute = 0; minute <= 40; minute++) {
        await reconcileAll(ctx);
        if (minute === 5) {
          const k = pickSigningKey(await ctx.keys.listByScope('consumer'), clock.now());
          await revokeKey(ctx, k!.kid!, 'suspected leak', OPS);
        }
        if (minute === 12) {
          await rotateScope(ctx, 'enterprise', OPS);
          await ctx.audit.record({
            type: 'client.created',
            actor: OPS,
            data: { name: 'billing', grants: { consumer: ['sign'] } },
          });
        }
        if (minute % 3 === 0) {
          const t = await signToken(ctx, 'consumer', { claims: { sub: 'alice', aud: 'consumer-api' } });
          const { jti } = JSON.parse(Buffer.from(t.token.split('.')[1]!, 'base64url').toString()) as {
            jti: string;
          };
          agg.note({ scope: 'consumer', kid: t.kid, client: 'billing', jti });
        }
        await agg.flush();
        await checkpointAudit(ctx);
        clock.advanceSeconds(60);
      }
      await agg.stop();
      await checkpointAudit(ctx, { force: true });
    }

    const checkpoints = async (a: Audited) => await a.store.tail({ type: CHECKPOINT_TYPE, limit: 1000 });

    it('a realistic run verifies; every lifecycle event, operator action and sign summary is chained and checkpointed by an HSM key in no JWKS', async () => {
      const a = await start();
      await realisticRun(a);
      const report = await verifyAuditChain(a.ctx);
      assert.ok(report.ok, JSON.stringify(report.break));
      assert.equal(report.trust.status, 'hsm-confirmed');
      assert.equal(report.uncovered, 0);
      assert.ok(report.checkpoints >= 5, `only ${report.checkpoints} checkpoints`);
      assert.equal(report.records, await auditChainLength(a.ctx));
      const all = await a.store.tail({ limit: 10_000 });
      const types = new Set(all.map((r) => r.type));
      for (const t of [
        'key.generating',
        'key.created',
        'key.activated',
        'key.retired',
        'key.expired',
        'key.destroyed',
        'key.revoked',
        'client.created',
        'sign.activity',
        'audit.checkpoint',
      ]) {
        assert.ok(types.has(t), `no ${t} record`);
      }
      const revoked = all.find((r) => r.type === 'key.revoked' && r.actor === OPS);
      assert.equal(revoked?.data.reason, 'suspected leak');
      assert.ok(all.some((r) => r.type === 'key.created' && r.actor === OPS && r.scope === 'enterprise'));
      const signs = all
        .filter((r) => r.type === 'sign.activity')
        .reduce((n, r) => n + Number(r.data.count), 0);
      assert.equal(signs, 14);
      // Seqs are contiguous and `at` follows the fake clock.
      assert.deepEqual(
        all.map((r) => r.seq),
        all.map((_, i) => i + 1),
      );
      assert.equal(all[0]!.at.getTime(), T0);
      // The audit key: one key of its own lifecycle, never in a JWKS, never a signing scope.
      const auditKeys = await a.ctx.keys.listByScope(AUDIT_SCOPE);
      assert.equal(auditKeys.length, 1);
      assert.equal(report.trust.kid, auditKeys[0]!.kid);
      assert.equal(a.ctx.cache.view(AUDIT_SCOPE), undefined);
      for (const s of ['consumer', 'enterprise']) {
        const body = a.ctx.cache.jwks(a.ctx.cache.view(s)!, a.clock.now()).body;
        assert.ok(!body.includes(auditKeys[0]!.kid!), `audit key in the ${s} JWKS`);
      }
      await assert.rejects(signToken(a.ctx, AUDIT_SCOPE, { claims: { aud: 'x' } }), (e) =>
        hasCode(e, 'SCOPE_NOT_FOUND'),
      );
    });

    describe('tampering is reported at the right position', () => {
      let a: Audited;
      let total: number;
      beforeEach(async () => {
        a = await start();
        await realisticRun(a);
        // Two records after the final checkpoint: the uncovered tail.
        await a.ctx.audit.record({
          type: 'client.removed',
          actor: OPS,
          data: { name: 'billing' },
        });
        await a.ctx.audit.record({ type: 'client.created', actor: OPS, data: { name: 'gateway' } });
        assert.ok((await verifyAuditChain(a.ctx)).ok);
        total = (await a.store.head()).seq;
        await dropGuards(a.ds);
      });

      it('an edited record: its data changed in place', async () => {
        const target = (await a.store.tail({ type: 'key.revoked', limit: 1 }))[0]!;
        await setData(a.ds, target.seq, { ...target.data, reason: 'routine' });
        assert.deepEqual(brokenAt(await verifyAuditChain(a.ctx)), ['edited', target.seq]);
      });

      it('a deleted record: a seq gap', async () => {
        const target = Math.floor(total / 2);
        await sql(a.ds, 'DELETE FROM audit_records WHERE seq = ?', [target]);
        const r = await verifyAuditChain(a.ctx);
        assert.deepEqual(brokenAt(r), ['deleted', target]);
        assert.equal(r.ok, false);
      });

      it('a deleted record with the rest renumbered', async () => {
        const target = Math.floor(total / 2);
        await sql(a.ds, 'DELETE FROM audit_records WHERE seq = ?', [target]);
        for (let s = target + 1; s <= total; s++)
          await sql(a.ds, 'UPDATE audit_records SET seq = ? WHERE seq = ?', [s - 1, s]);
        assert.deepEqual(brokenAt(await verifyAuditChain(a.ctx)), ['deleted', target]);
      });

      it('two records swapped', async () => {
        const x = Math.floor(total / 3);
        await sql(a.ds, 'UPDATE audit_records SET seq = ? WHERE seq = ?', [-1, x]);
        await sql(a.ds, 'UPDATE audit_records SET seq = ? WHERE seq = ?', [x, x + 1]);
        await sql(a.ds, 'UPDATE audit_records SET seq = ? WHERE seq = ?', [x + 1, -1]);
        const r = await verifyAuditChain(a.ctx);
        assert.deepEqual(brokenAt(r), ['reordered', x]);
      });

      it('history rewritten with every hash recomputed: caught by the next checkpoint signature', async () => {
        const target = (await a.store.tail({ type: 'key.revoked', limit: 1 }))[0]!;
        await setData(a.ds, target.seq, { ...target.data, reason: 'routine' });
        await rehashFrom(a.ds, target.seq);
        const next = (await checkpoints(a)).find((c) => c.seq > target.seq)!;
        const r = await verifyAuditChain(a.ctx);
        assert.deepEqual(brokenAt(r), ['checkpoint-mismatch', next.seq]);
        assert.match(r.break!.message, new RegExp(`\\.\\.${next.seq - 1} were rewritten`));
      });

      it('a checkpoint signature replaced (and the chain re-hashed around it)', async () => {
        const cp = (await checkpoints(a))[1]!;
        const d = cp.data as unknown as CheckpointData;
        const { signer } = await softwareSigner();
        const forged = await signStatement({ ...signer, kid: d.auditKid }, 'checkpoint', {
          seq: d.covers.seq,
          hash: d.covers.hash,
          at: cp.at.getTime(),
        });
        await setData(a.ds, cp.seq, { ...cp.data, signature: forged });
        await rehashFrom(a.ds, cp.seq);
        assert.deepEqual(brokenAt(await verifyAuditChain(a.ctx)), ['checkpoint-signature', cp.seq]);
      });

      it('the tail after the last checkpoint deleted', async () => {
        const last = (await checkpoints(a)).at(-1)!;
        assert.ok(last.seq < total);
        await sql(a.ds, 'DELETE FROM audit_records WHERE seq > ?', [last.seq]);
        const r = await verifyAuditChain(a.ctx);
        assert.deepEqual(brokenAt(r), ['truncated', last.seq + 1]);
      });

      it('the tail deleted back into signed history and the head row rewound: the signed head marker says more existed', async () => {
        const last = (await checkpoints(a)).at(-1)!;
        await sql(a.ds, 'DELETE FROM audit_records WHERE seq >= ?', [last.seq]);
        const end = (await a.store.bySeq(last.seq - 1))!;
        await sql(a.ds, 'UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1', [end.seq, end.hash]);
        const r = await verifyAuditChain(a.ctx);
        assert.deepEqual(brokenAt(r), ['truncated', end.seq + 1]);
        assert.match(r.break!.message, /head marker/);
      });

      it('everything re-signed with an attacker key: self-consistent offline, refused against the HSM', async () => {
        const { signer, jwk } = await softwareSigner();
        // A key row for the attacker's key, pointing at an object that is not in the HSM.
        const real = (await a.ctx.keys.listByScope(AUDIT_SCOPE))[0]!;
        const fakeId = randomUUID();
        await a.ctx.keys.insertGenerating(
          {
            ...real,
            id: fakeId,
            kid: null,
            status: 'generating',
            publicJwk: null,
            backendRef: { ...real.backendRef, ref: { ...real.backendRef.ref, id: 'ab'.repeat(16) } },
          },
          a.clock.now(),
        );
        await a.ctx.keys.completeGenerating(
          fakeId,
          {
            kid: signer.kid,
            publicJwk: jwk,
            backendRef: { ...real.backendRef, ref: { ...real.backendRef.ref, id: 'ab'.repeat(16) } },
          },
          a.clock.now(),
        );
        // Re-sign every checkpoint, re-hash after each, re-sign the head marker.
        for (const cp of await checkpoints(a)) {
          const fresh = (await a.store.bySeq(cp.seq))!;
          const prev = (await a.store.bySeq(cp.seq - 1))!;
          const signature = await signStatement(signer, 'checkpoint', {
            seq: prev.seq,
            hash: prev.hash,
            at: fresh.at.getTime(),
          });
          await setData(a.ds, cp.seq, {
            covers: { seq: prev.seq, hash: prev.hash },
            auditKid: signer.kid,
            signature,
          });
          await rehashFrom(a.ds, cp.seq);
        }
        const lastCp = (await checkpoints(a)).at(-1)!;
        const marker: SignedMarker = await signStatement(signer, 'head', {
          seq: lastCp.seq,
          hash: lastCp.hash,
          at: a.clock.now().getTime(),
        });
        await sql(a.ds, 'UPDATE audit_head SET marker = ?, marker_seq = ? WHERE id = 1', [
          JSON.stringify(marker),
          lastCp.seq,
        ]);
        const offline = await verifyAuditChain(a.ctx, { online: false });
        assert.ok(offline.ok, JSON.stringify(offline.break));
        assert.equal(offline.trust.status, 'unconfirmed');
        const online = await verifyAuditChain(a.ctx);
        assert.equal(online.break?.kind, 'checkpoint-key');
        const pinned = await verifyAuditChain(a.ctx, { online: false, trustKids: [real.kid!] });
        assert.equal(
          pinned.trust.status,
          'unconfirmed',
          'a pin on the real key does not vouch for the attacker key',
        );
      });
    });

    describe('retention', () => {
      it('prune refuses to remove evidence about a live or recently dead key, and changes nothing', async () => {
        const a = await start({ evidencePeriod: '1d' });
        await realisticRun(a);
        const before = await a.store.tail({ limit: 10_000 });
        await assert.rejects(pruneAudit(a.ctx, a.clock.now(), OPS), (e: unknown) => {
          assert.ok(hasCode(e, 'AUDIT_PRUNE_REFUSED'));
          assert.equal((e as { details: { seq: number } }).details.seq, 1);
          return true;
        });
        assert.deepEqual(await a.store.tail({ limit: 10_000 }), before);
        assert.ok((await verifyAuditChain(a.ctx)).ok);
      });

      it('a legal prune removes only a prefix, stops at evidence, leaves a signed anchor, and the rest verifies', async () => {
        const a = await start({ evidencePeriod: '1d' });
        await realisticRun(a);
        const auditKey = (await a.ctx.keys.listByScope(AUDIT_SCOPE))[0]!;
        // Two days on, every scope key of the run has been dead for more than a day; the audit key lives.
        a.clock.advanceSeconds(2 * DAY);
        await reconcileAll(a.ctx);
        const r = await pruneAudit(a.ctx, new Date(a.clock.now().getTime() - 3600_000), OPS);
        const firstAuditRecord = (await a.store.range(1, 1))[0]!;
        assert.ok(r.pruned > 0);
        assert.equal(r.firstSeq, firstAuditRecord.seq);
        assert.equal(firstAuditRecord.type, 'key.generating');
        assert.equal(firstAuditRecord.scope, AUDIT_SCOPE);
        assert.match(
          r.blockedBy!.reason,
          new RegExp(`scope ${AUDIT_SCOPE} is still published|${AUDIT_SCOPE}`),
        );
        assert.equal(r.blockedBy!.seq, r.firstSeq);
        const v = await verifyAuditChain(a.ctx);
        assert.ok(v.ok, JSON.stringify(v.break));
        assert.equal(v.prunedBelow, r.firstSeq);
        assert.equal(v.trust.status, 'hsm-confirmed');

        // 100 days on, the first audit key is long retired: a new one signs and the old records go.
        a.clock.advanceSeconds(100 * DAY);
        await reconcileAll(a.ctx);
        await checkpointAudit(a.ctx, { force: true });
        const r2 = await pruneAudit(a.ctx, new Date(a.clock.now().getTime() - 3600_000), OPS);
        assert.ok(r2.pruned > 0 && r2.firstSeq! > r.firstSeq!);
        const v2 = await verifyAuditChain(a.ctx);
        assert.ok(v2.ok, JSON.stringify(v2.break));
        assert.notEqual(v2.trust.kid, auditKey.kid, 'signed by the renewed audit key');
        assert.ok((await a.store.first())!.seq === r2.firstSeq);

        // Removing one more record at the start is not a prune: the anchor no longer matches.
        await dropGuards(a.ds);
        await sql(a.ds, 'DELETE FROM audit_records WHERE seq = ?', [r2.firstSeq]);
        assert.deepEqual(brokenAt(await verifyAuditChain(a.ctx)), ['deleted', r2.firstSeq]);
      });

      it('prune refuses to run on a broken chain (it would erase the evidence of tampering)', async () => {
        const a = await start({ evidencePeriod: '1d' });
        await realisticRun(a);
        await dropGuards(a.ds);
        await setData(a.ds, 3, { forged: true });
        a.clock.advanceSeconds(3 * DAY);
        await assert.rejects(pruneAudit(a.ctx, a.clock.now(), OPS), (e) => hasCode(e, 'AUDIT_CHAIN_BROKEN'));
        assert.equal((await a.store.first())!.seq, 1);
      });
    });

    it('the scheduled checkpoint job checkpoints after writes, and renews the audit key before it stops signing', async () => {
      const a = await start({ checkpointEveryRecords: 3 });
      // The job the daemon's scheduler runs every few seconds (src/audit/jobs.ts), run here by hand.
      const job = auditCheckpointJob(a.ctx);
      for (let i = 0; i < 3; i++)
        await a.ctx.audit.record({ type: 'client.created', actor: OPS, data: { i } });
      await job.run();
      const first = (await checkpoints(a)).at(-1);
      assert.ok(first, 'no checkpoint written by the job');
      const firstKey = (await a.ctx.keys.listByScope(AUDIT_SCOPE))[0]!;
      // 89.5 days later the key has less than a day left: the next checkpoint uses a new key.
      a.clock.advanceSeconds(89.5 * DAY);
      for (let i = 0; i < 3; i++)
        await a.ctx.audit.record({ type: 'client.created', actor: OPS, data: { i } });
      await job.run();
      const keys = await a.ctx.keys.listByScope(AUDIT_SCOPE);
      assert.equal(keys.length, 2);
      // 40 days on the old key is past its destroy time; the next checkpoint destroys it.
      a.clock.advanceSeconds(40 * DAY);
      await a.ctx.audit.record({ type: 'client.removed', actor: OPS });
      await checkpointAudit(a.ctx, { force: true });
      const old = (await a.ctx.keys.findById(firstKey.id))!;
      assert.ok(old.destroyedAt, 'the retired audit key was not destroyed');
      const backend = await a.ctx.backend(old.backendRef.backend);
      assert.equal(await backend.exists(old.backendRef), false);
      const v = await verifyAuditChain(a.ctx);
      assert.ok(v.ok, JSON.stringify(v.break));
      assert.equal(v.trust.status, 'hsm-confirmed');
      assert.notEqual(v.trust.kid, firstKey.kid);
    });

    it('the checkpoint job backs off while the audit key cannot sign, and checkpoints once it can', async () => {
      const a = await start({ checkpointEveryRecords: 3, checkpointEvery: '5m' });
      const job = auditCheckpointJob(a.ctx);
      for (let i = 0; i < 3; i++)
        await a.ctx.audit.record({ type: 'client.created', actor: OPS, data: { i } });
      await job.run();
      const before = (await checkpoints(a)).length;
      for (let i = 0; i < 3; i++)
        await a.ctx.audit.record({ type: 'client.created', actor: OPS, data: { i } });
      // The HSM goes away: every attempt to reach the audit key's backend fails.
      let attempts = 0;
      const down = {
        ...a.ctx,
        backend: async () => {
          attempts++;
          throw new Error('HSM unreachable');
        },
      };
      const failing = auditCheckpointJob(down);
      await failing.run();
      assert.ok(attempts > 0, 'the job did not try to checkpoint');
      const afterFirst = attempts;
      // The scheduler's ticks within the next minute do not try again (one warning a minute).
      for (let s = 0; s < 55; s += 5) {
        a.clock.advanceSeconds(5);
        await failing.run();
      }
      assert.equal(attempts, afterFirst);
      a.clock.advanceSeconds(10);
      await failing.run();
      assert.ok(attempts > afterFirst, 'no retry after the back-off');
      assert.equal((await checkpoints(a)).length, before);
      // Back: the job with the reachable HSM writes the checkpoint.
      await job.run();
      assert.equal((await checkpoints(a)).length, before + 1);
    });

    if (env === 'PostgreSQL') {
      it('two daemons appending at once never fork the chain (advisory lock inside each transaction)', async () => {
        const a = await start();
        const url = a.config.store.url;
        const other = validateConfig(testConfigDocument(token, [{ name: 'consumer' }], { store: { url } }), {
          source: '<test>',
          baseDir: token.dir,
        });
        const rt2 = await openRuntime(other, {
          log: pino({ level: 'silent' }),
          clock: a.clock,
          audit: storeAuditLog(a.clock),
        });
        try {
          await Promise.all(
            [a.ctx, rt2.ctx].flatMap((ctx, d) =>
              Array.from({ length: 40 }, (_, i) =>
                ctx.audit.record({ type: 'client.created', actor: `daemon-${d}`, data: { i } }),
              ),
            ),
          );
          await checkpointAudit(rt2.ctx, { force: true });
        } finally {
          await rt2.close();
        }
        const v = await verifyAuditChain(a.ctx);
        assert.ok(v.ok, JSON.stringify(v.break));
        assert.equal(
          v.records,
          80 + 2 + 1,
          '80 records, the audit key (generating, created) and a checkpoint',
        );
      });
    }
  });
}
