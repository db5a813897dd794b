import * as assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { runKeywarden } from '../helpers/cli';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

interface Finding {
  kind: string;
  id: string | null;
  subject: string;
  message: string;
}

/** One attribute record of a SoftHSM2 object file: type, kind (3: byte string), length, bytes. */
function byteStringRecord(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(24);
  head.writeBigUInt64BE(BigInt(type), 0);
  head.writeBigUInt64BE(3n, 8);
  head.writeBigUInt64BE(BigInt(value.length), 16);
  return Buffer.concat([head, value]);
}

/**
 * CKA_CLASS = CKO_DATA (kind 2: an unsigned long), CKA_TOKEN = true and CKA_PRIVATE = false (kind
 * 1: a boolean) as SoftHSM2 object file records. Not private, so SoftHSM2 stores (and reads) the
 * attribute values in clear.
 */
const PUBLIC_DATA_RECORDS = records(0);
/** The same with CKA_CLASS = CKO_PUBLIC_KEY. */
const PUBLIC_KEY_RECORDS = records(2);

function records(cls: number): Buffer {
  return Buffer.concat([
    Buffer.from('0000000000000000' + '0000000000000002' + cls.toString(16).padStart(16, '0'), 'hex'),
    Buffer.from('0000000000000001' + '0000000000000001' + 'ff', 'hex'),
    Buffer.from('0000000000000002' + '0000000000000001' + '00', 'hex'),
  ]);
}

/**
 * #18 item 5: a process killed while the token writes a key can leave a half-written object:
 * SoftHSM2 creates the object file, then writes its attributes, so the object may have no class,
 * no label, or nothing at all. `hsm check` now reports every such object as `partial-object`
 * (saying whose it provably is), and reconcile destroys the ones that are provably keywarden's (the
 * random CKA_ID, or the exact label, of a key row whose generation was interrupted), never the
 * others. The objects are made in a real SoftHSM2 token by writing the object files a kill leaves.
 */
describe('hsm check and reconcile: half-written objects after a kill during generation', function () {
  this.timeout(180_000);
  let token: SoftHsmToken;
  let cfg: string;
  let tokenDir: string;

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    cfg = join(token.dir, 'partial.yaml');
    await writeFile(cfg, stringify(testConfigDocument(token, [{ name: 'demo' }])));
    const tokens = join(token.dir, 'tokens');
    tokenDir = join(
      tokens,
      readdirSync(tokens).find((d) => statSync(join(tokens, d)).isDirectory())!,
    );
  });
  after(async () => token?.cleanup());

  const hsmCheck = async () => {
    const r = await runKeywarden(['-c', cfg, '--local', '--json', 'hsm', 'check']);
    return { code: r.code, findings: (JSON.parse(r.stdout) as { findings: Finding[] }).findings };
  };

  it('reports each as partial-object, and reconcile removes only the ones provably keywarden’s', async () => {
    assert.equal((await runKeywarden(['-c', cfg, 'init'])).code, 0);
    assert.deepEqual((await hsmCheck()).findings, []);

    // A rotation killed right after the backend call: a `generating` row and its key pair.
    const killed = await runKeywarden(['-c', cfg, '--local', 'keys', 'rotate', '--scope', 'demo'], {
      env: { KEYWARDEN_TEST_CRASH_AT: 'after-backend' },
    });
    assert.equal(killed.code, null, killed.stderr);
    const db = new Database(join(token.dir, 'keywarden.db'), { readonly: true });
    const row = db.prepare("SELECT id, backend_ref FROM keys WHERE status = 'generating'").get() as {
      id: string;
      backend_ref: string;
    };
    db.close();
    const ref = (JSON.parse(row.backend_ref) as { ref: { id: string; label: string } }).ref;

    // What a kill can leave while a token writes an object: SoftHSM2 creates the object file
    // first (a header and no attributes: nothing says whose it is), and a token that writes
    // attributes one by one can stop after some: here a public key with the row's CKA_ID and no
    // label, and a data object with the row's label and nothing else (a seal cut short).
    const existing = readdirSync(tokenDir).find((f) => f.endsWith('.object') && f !== 'token.object')!;
    const header = readFileSync(join(tokenDir, existing)).subarray(0, 8);
    const files = {
      byId: join(tokenDir, '0a000000-0000-0000-0000-000000000001.object'),
      byLabel: join(tokenDir, '0a000000-0000-0000-0000-000000000002.object'),
      nothing: join(tokenDir, '0a000000-0000-0000-0000-000000000003.object'),
    };
    writeFileSync(
      files.byId,
      Buffer.concat([header, PUBLIC_KEY_RECORDS, byteStringRecord(0x102, Buffer.from(ref.id, 'hex'))]),
    );
    writeFileSync(
      files.byLabel,
      Buffer.concat([header, PUBLIC_DATA_RECORDS, byteStringRecord(0x3, Buffer.from(ref.label))]),
    );
    writeFileSync(files.nothing, header);

    const before = await hsmCheck();
    assert.equal(before.code, 1);
    const partial = before.findings.filter((f) => f.kind === 'partial-object');
    assert.equal(partial.length, 3, JSON.stringify(before.findings, null, 1));
    assert.equal(
      partial.filter((f) => f.message.includes(`interrupted generation of key row ${row.id}`)).length,
      2,
    );
    // The next reconcile (init runs one) resolves the interrupted generation: the row goes, and
    // with it every object provably its own; the anonymous one stays, still reported.
    const init = await runKeywarden(['-c', cfg, '--json', 'init']);
    assert.equal(init.code, 0, init.stderr);
    assert.ok(!existsSync(files.byId), 'the object with the row’s CKA_ID is still there');
    assert.ok(!existsSync(files.byLabel), 'the object with the row’s label is still there');
    assert.ok(existsSync(files.nothing), 'an object nothing proves keywarden’s was destroyed');
    const after = await hsmCheck();
    assert.deepEqual(
      after.findings.map((f) => [f.kind, f.id]),
      [['partial-object', null]],
    );
  });
});
