/**
 * `hsm check` / `hsm status` against real SoftHSM2 tokens: a clean token passes; objects planted
 * behind keywarden's back (an exportable private key with keywarden's label, made by OpenSC's
 * pkcs11-tool in another process; an orphan made through the backend without a key row; keys
 * that can decrypt, unwrap, derive or sign-recover, modifiable and copyable keys, unlabelled
 * objects, half key pairs and a key seal without its key, planted by pkcs11js in another process)
 * and a dead key nobody destroyed make it fail, in process and through the real CLI (exit 1).
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { checkpointAudit } from '../../src/audit/checkpoint';
import type { ModuleDescription } from '../../src/backends/pkcs11';
import { checkHsm, hsmStatus, type HsmCheckReport } from '../../src/lifecycle/hsm-check';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { openRuntime, storeAuditLog, type Runtime } from '../../src/main';
import { FakeClock } from '../../src/policy/clock';
import { validateConfig } from '../../src/config/validate-config';
import { pkcs11Tool, runPlanter } from '../contract/pkcs11-fixture';
import { runKeywarden } from '../helpers/cli';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const kinds = (r: HsmCheckReport) => [...new Set(r.findings.map((f) => f.kind))].sort();

/** Finding kinds per subject (label), sorted: one entry per finding. */
function bySubject(r: HsmCheckReport): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of r.findings) (out[f.subject] ??= []).push(f.kind);
  for (const k of Object.values(out)) k.sort();
  return out;
}

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
      audit: storeAuditLog(clock),
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
    // Each key is a private and a public object on the token (and, once sealed, a key seal data
    // object), all attributed to their row.
    const keyObjects = b!.objects.filter((o) => o.class !== 'data');
    assert.equal(keyObjects.length, 4);
    for (const row of rows) {
      assert.deepEqual(
        keyObjects
          .filter((o) => o.kid === row.kid)
          .map((o) => o.class)
          .sort(),
        ['private', 'public'],
      );
    }
    for (const o of b!.objects.filter((o) => o.class === 'data')) {
      assert.equal(o.application, 'keywarden-key-seal/v1');
      assert.ok(o.kid !== null && rows.some((row) => row.kid === o.kid));
    }
    for (const priv of keyObjects.filter((o) => o.class === 'private')) {
      const a = priv.attributes;
      assert.deepEqual(
        [a.sensitive, a.extractable, a.alwaysSensitive, a.neverExtractable],
        [true, false, true, true],
      );
      // The hardening of new keys, as hsm check reads it back from the token.
      assert.deepEqual(
        [a.modifiable, a.copyable, a.sign, a.signRecover, a.decrypt, a.unwrap, a.derive],
        [false, false, true, false, false, false, false],
      );
    }
    for (const pub of keyObjects.filter((o) => o.class === 'public')) {
      assert.equal(pub.attributes.modifiable, false);
    }
  });

  it('names each hygiene problem planted on the token by its kind, in process and through the CLI (--json, exit 1)', async () => {
    const [consumer] = await rt.ctx.keys.listByScope('consumer');
    const consumerLabel = consumer!.backendRef.ref.label as string;
    const consumerId = consumer!.backendRef.ref.id as string;
    const sealLabel = `keywarden:consumer:${randomUUID()}`;
    const halfLabel = `keywarden:consumer:${randomUUID()}`;
    // Each planted key is as hardened as keywarden's own but for one thing (pkcs11-planter.ts).
    await runPlanter(token, [
      { op: 'keypair', keyType: 'RSA', label: 'plant-decrypt', idHex: 'd1', private: { decrypt: true } },
      { op: 'keypair', keyType: 'RSA', label: 'plant-unwrap', idHex: 'd2', private: { unwrap: true } },
      { op: 'keypair', keyType: 'EC', label: 'plant-derive', idHex: 'd3', private: { derive: true } },
      {
        op: 'keypair',
        keyType: 'RSA',
        label: 'plant-sign-recover',
        idHex: 'd4',
        private: { signRecover: true },
      },
      { op: 'keypair', keyType: 'EC', label: 'plant-modifiable', idHex: 'd5', private: { modifiable: true } },
      { op: 'keypair', keyType: 'EC', label: 'plant-copyable', idHex: 'd6', private: { copyable: true } },
      // A key made by the template before this change (or by the fallback on a module refusing the
      // optional hardening) carries SoftHSM2's defaults: modifiable, copyable, sign-recover.
      {
        op: 'keypair',
        keyType: 'EC',
        label: 'plant-legacy',
        idHex: 'd7',
        private: { modifiable: null, copyable: null, signRecover: null },
        public: { modifiable: null },
      },
      { op: 'keypair', keyType: 'EC', label: '', idHex: 'd8' },
      { op: 'data', label: '', valueHex: '00' },
      // A key seal whose key pair is gone, and a key pair whose private half is gone.
      {
        op: 'data',
        label: sealLabel,
        application: 'keywarden-key-seal/v1',
        valueHex: 'c0ffee',
        modifiable: false,
      },
      { op: 'keypair', keyType: 'EC', label: halfLabel, idHex: 'd9' },
      { op: 'destroy', class: 'private', label: halfLabel },
    ]);
    // Another client (OpenSC) deletes the public half of keywarden's own consumer key.
    await pkcs11Tool(token, ['--delete-object', '--type', 'pubkey', '--id', consumerId]);

    const expected: Record<string, string[]> = {
      'plant-decrypt': ['can-decrypt'],
      'plant-unwrap': ['can-unwrap'],
      'plant-derive': ['can-derive'],
      'plant-sign-recover': ['can-sign-recover'],
      'plant-modifiable': ['modifiable'],
      'plant-copyable': ['copyable'],
      'plant-legacy': ['can-sign-recover', 'copyable', 'modifiable'],
      // Both halves of the unlabelled key pair and the unlabelled data object.
      '': ['unlabelled', 'unlabelled', 'unlabelled'],
      [sealLabel]: ['orphan', 'seal-without-key'],
      [halfLabel]: ['orphan', 'public-key-without-private'],
      [consumerLabel]: ['private-key-without-public'],
    };
    const r = await checkHsm(rt.ctx);
    assert.equal(r.ok, false);
    assert.deepEqual(bySubject(r), expected);
    const message = (kind: string, subject: string) =>
      r.findings.find((f) => f.kind === kind && f.subject === subject)?.message;
    assert.match(
      message('can-decrypt', 'plant-decrypt')!,
      /private key 'plant-decrypt' \(id d1\) can decrypt/,
    );
    assert.match(message('modifiable', 'plant-legacy')!, /is modifiable.*rotate the key/);
    assert.match(message('seal-without-key', sealLabel)!, /key seal '.*' \(id -\) has no key pair/);
    assert.match(message('private-key-without-public', consumerLabel)!, /has no public key/);
    assert.equal(r.findings.find((f) => f.subject === consumerLabel)?.kid, consumer!.kid);
    const seal = r.backends[0]!.objects.find((o) => o.label === sealLabel);
    assert.equal(seal?.application, 'keywarden-key-seal/v1');

    await rt.close();
    const json = await runKeywarden(['-c', configPath, '--local', '--json', 'hsm', 'check']);
    assert.equal(json.code, 1, json.stderr);
    const fromCli = JSON.parse(json.stdout) as HsmCheckReport;
    assert.equal(fromCli.ok, false);
    assert.deepEqual(bySubject(fromCli), expected);
    const human = await runKeywarden(['-c', configPath, '--local', 'hsm', 'check']);
    assert.equal(human.code, 1, human.stderr);
    assert.match(human.stdout, /\bmod\s+copy\s+uses\b/);
    assert.match(human.stdout, /can-sign-recover: private key 'plant-sign-recover'/);
    assert.match(human.stdout, /unlabelled: data object \(no label\)/);
    assert.match(human.stdout, /public-key-without-private: public key 'keywarden:consumer:/);
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
    const clean = await runKeywarden(['-c', configPath, '--local', '--json', 'hsm', 'check']);
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
    const dirty = await runKeywarden(['-c', configPath, '--local', 'hsm', 'check']);
    assert.equal(dirty.code, 1, dirty.stderr);
    assert.match(dirty.stdout, /hsm check FAILED/);
    assert.match(dirty.stdout, /extractable: private key 'keywarden:x:y'/);
    const status = await runKeywarden(['-c', configPath, '--local', '--json', 'hsm', 'status'], {
      // No PIN anywhere: status must not need one.
      env: { KEYWARDEN_TEST_PIN: '' },
    });
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout) as ReturnType<typeof hsmStatus>;
    const b = s.backends[0]! as ReturnType<typeof hsmStatus>['backends'][number] & {
      module: ModuleDescription | null;
    };
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
