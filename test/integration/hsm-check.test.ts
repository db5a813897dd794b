/**
 * `hsm check` / `hsm status` against real SoftHSM2 tokens: a clean token passes; objects planted
 * behind keywarden's back (an exportable private key with keywarden's label, made by OpenSC's
 * pkcs11-tool in another process; an orphan made through the backend without a key row) and a
 * dead key nobody destroyed make it fail, in process and through the real CLI (exit 1).
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { createStoreAuditSink } from '../../src/audit';
import { checkpointAudit } from '../../src/lifecycle/audit-checkpoint';
import { checkHsm, hsmStatus, type HsmCheckReport } from '../../src/lifecycle/hsm-check';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { openRuntime, type Runtime } from '../../src/main';
import { FakeClock } from '../../src/policy/clock';
import { validateConfig } from '../../src/policy/validate-config';
import { pkcs11Tool } from '../contract/pkcs11-fixture';
import { runKeywarden } from '../helpers/cli';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const kinds = (r: HsmCheckReport) => [...new Set(r.findings.map((f) => f.kind))].sort();

describe('hsm check and hsm status on real SoftHSM2 tokens', function () {
  this.timeout(180_000);
  let token: SoftHsmToken;
  let rt: Runtime;
  let clock: FakeClock;
  let configPath: string;

  beforeEach(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    const doc = testConfigDocument(token, [{ name: 'consumer' }], {
      store: { url: `sqlite:${join(token.dir, 'kw.db')}` },
    });
    configPath = join(token.dir, 'keywarden.json');
    await writeFile(configPath, JSON.stringify(doc));
    const config = validateConfig(doc, { source: '<test>', baseDir: token.dir });
    clock = new FakeClock(Date.now());
    rt = await openRuntime(config, {
      log: pino({ level: 'silent' }),
      clock,
      audit: createStoreAuditSink(config, { clock, autoCheckpoint: false }),
    });
    await reconcileAll(rt.ctx);
    await checkpointAudit(rt.ctx, { force: true });
  });

  afterEach(async () => {
    await rt?.close();
    await token?.cleanup();
  });

  it('passes on a clean token and lists every object, each matched to its key row', async () => {
    const r = await checkHsm(rt.ctx);
    assert.deepEqual(r.findings, []);
    assert.ok(r.ok);
    const [b] = r.backends;
    assert.equal(b?.allObjects, true);
    const rows = await rt.ctx.keys.listAll();
    assert.equal(rows.length, 2, 'the consumer key and the audit key');
    // Each key is a private and a public object on the token, both attributed to their row.
    assert.equal(b?.objects.length, 4);
    for (const row of rows) {
      assert.deepEqual(
        b!.objects
          .filter((o) => o.kid === row.kid)
          .map((o) => o.class)
          .sort(),
        ['private', 'public'],
      );
    }
    const priv = b!.objects.find((o) => o.class === 'private')!;
    assert.deepEqual(
      [
        priv.attributes.sensitive,
        priv.attributes.extractable,
        priv.attributes.alwaysSensitive,
        priv.attributes.neverExtractable,
      ],
      [true, false, true, true],
    );
  });

  it("fails on an exportable private key planted with keywarden's label by another PKCS#11 client", async () => {
    await pkcs11Tool(token, [
      '--keypairgen',
      '--key-type',
      'EC:prime256v1',
      '--label',
      'keywarden:consumer:planted',
      '--id',
      '0a0b0c0d',
      '--usage-sign',
      '--extractable',
    ]);
    const r = await checkHsm(rt.ctx);
    assert.equal(r.ok, false);
    const planted = r.findings.filter((f) => f.id === '0a0b0c0d');
    assert.ok(
      planted.some((f) => f.kind === 'extractable'),
      JSON.stringify(r.findings),
    );
    assert.ok(planted.some((f) => f.kind === 'not-never-extractable'));
    assert.ok(planted.some((f) => f.kind === 'orphan'));
    // The keys keywarden made are not blamed.
    assert.ok(
      r.findings.every((f) => f.id === '0a0b0c0d'),
      JSON.stringify(r.findings),
    );
  });

  it("fails on an orphan: a well-protected object with keywarden's label but no key row", async () => {
    const backend = await rt.ctx.backend('hsm');
    const keyId = randomUUID();
    const ref = backend.planKey({ scope: 'consumer', keyId });
    const now = clock.now();
    await backend.generate(ref, { alg: 'ES256', scope: 'consumer', keyId, notBefore: now, notAfter: now });
    const r = await checkHsm(rt.ctx);
    assert.deepEqual(kinds(r), ['orphan']);
    assert.equal(r.findings.length, 2, 'its private and its public object');
    assert.ok(r.findings.every((f) => f.id === ref.ref.id && f.subject === `keywarden:consumer:${keyId}`));
  });

  it('fails on a dead key whose object outlived its destroy time, and passes once reconcile destroyed it', async () => {
    const [key] = await rt.ctx.keys.listByScope('consumer');
    // Lifetime 17 min + destroyAfter 10 min; no reconcile has run meanwhile.
    clock.set(key!.expiresAt.getTime() + 11 * 60_000);
    const r = await checkHsm(rt.ctx);
    assert.deepEqual(kinds(r), ['overdue-destroy']);
    assert.equal(r.findings[0]?.kid, key!.kid);
    await reconcileAll(rt.ctx);
    const after = await checkHsm(rt.ctx);
    assert.deepEqual(after.findings, []);
  });

  it('fails when a published key has lost its private object', async () => {
    const [key] = await rt.ctx.keys.listByScope('consumer');
    await (await rt.ctx.backend('hsm')).destroy(key!.backendRef);
    const r = await checkHsm(rt.ctx);
    assert.deepEqual(kinds(r), ['missing-object']);
  });

  it('through the CLI: exit 0 and a listing on a clean token, exit 1 with findings after a plant; status needs no PIN', async () => {
    await rt.close();
    const clean = await runKeywarden(['-c', configPath, '--json', 'hsm', 'check']);
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal((JSON.parse(clean.stdout) as HsmCheckReport).ok, true);
    await pkcs11Tool(token, [
      '--keypairgen',
      '--key-type',
      'EC:prime256v1',
      '--label',
      'keywarden:x:y',
      '--id',
      '01',
      '--usage-sign',
      '--extractable',
    ]);
    const dirty = await runKeywarden(['-c', configPath, 'hsm', 'check']);
    assert.equal(dirty.code, 1, dirty.stderr);
    assert.match(dirty.stdout, /hsm check FAILED/);
    assert.match(dirty.stdout, /extractable: private key 'keywarden:x:y'/);
    const status = await runKeywarden(['-c', configPath, '--json', 'hsm', 'status'], {
      // No PIN anywhere: status must not need one.
      env: { KEYWARDEN_TEST_PIN: '' },
    });
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout) as ReturnType<typeof hsmStatus>;
    const b = s.backends[0]!;
    assert.equal(b.type, 'pkcs11');
    if (b.type !== 'pkcs11') return;
    assert.equal(b.module?.token?.token?.label, token.tokenLabel);
    assert.equal(
      typeof b.module?.token?.token?.freePrivateMemory === 'number' ||
        b.module?.token?.token?.freePrivateMemory === null,
      true,
    );
    assert.ok(s.coreDumpLimit !== undefined);
    assert.ok(!status.stdout.includes(token.pin));
  });
});
