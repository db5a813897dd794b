import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Client } from 'pg';
import { stringify } from 'yaml';
import { runKeywarden } from '../helpers/cli';
import { freePort } from '../helpers/free-port';
import { startPostgres, type TestPostgres } from '../helpers/postgres';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

type Doc = Omit<ReturnType<typeof testConfigDocument>, 'backends'> & {
  backends: Record<string, unknown>;
  [k: string]: unknown;
};
interface Check {
  subject: string;
  status: 'ok' | 'problem' | 'note';
  code?: string;
  message: string;
}

/**
 * #17: `config check` passed with a missing PIN variable or file and a missing module, and
 * nothing checked the token or the store before start. Plain `config check` now reports what the
 * machine lacks (exit 3); `--deep` also loads each module and finds its token (no login), asks
 * Key Vault, and inspects the store read-only, reporting every problem at once (exit 1), with no
 * side effect: no store, table or HSM object is created.
 */
describe('config check: the PIN source, the module, and with --deep the token and the store', function () {
  this.timeout(180_000);
  let token: SoftHsmToken;
  let pg: TestPostgres;
  let n = 0;

  before(async () => {
    [token, pg] = await Promise.all([createSoftHsmToken(), startPostgres()]);
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
  });
  after(async () => {
    await pg?.stop();
    await token?.cleanup();
  });

  const good = (): Doc =>
    testConfigDocument(token, [{ name: 'demo' }], { store: { url: `sqlite:store-${++n}/kw.db` } }) as Doc;
  const hsm = (d: Doc) => d.backends.hsm as Record<string, unknown>;
  const write = async (doc: Doc) => {
    const p = join(token.dir, `deep-${++n}.yaml`);
    await writeFile(p, stringify(doc));
    return p;
  };
  const check = (cfg: string, ...extra: string[]) =>
    runKeywarden(['-c', cfg, '--json', 'config', 'check', ...extra], { env: { KW_TEST_PIN: undefined } });
  const hsmObjects = () =>
    execFileSync(
      'pkcs11-tool',
      ['--module', token.modulePath, '--token-label', token.tokenLabel, '--login', '--pin', token.pin, '-O'],
      { env: { ...process.env, ...token.env }, encoding: 'utf8' },
    );

  it('plain: a missing PIN file, an unset PIN variable and a missing module are each exit 3, all listed', async () => {
    const doc = good();
    hsm(doc).pin = { file: join(token.dir, 'no-such-pin') };
    hsm(doc).module = join(token.dir, 'no-such-module.so');
    doc.backends.second = { ...hsm(good()), pin: { env: 'KW_TEST_PIN' } };
    const r = await check(await write(doc));
    assert.equal(r.code, 3, r.stderr);
    const problems = JSON.parse(r.stdout).error.details as { path: string; message: string }[];
    assert.deepEqual(problems.map((p) => p.path).sort(), [
      'backends.hsm.module',
      'backends.hsm.pin',
      'backends.second.pin',
    ]);
    assert.match(r.stderr, /no-such-pin: ENOENT/);
    assert.match(r.stderr, /KW_TEST_PIN is not set/);
    assert.match(r.stderr, /no-such-module\.so: ENOENT/);
    // The PIN is set, the file there: valid.
    const ok = await check(await write(good()));
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).valid, true);
  });

  it('--deep on a good config before init: exit 0, the store noted as not initialised, nothing created', async () => {
    const dir = readdirSync(token.dir).sort();
    const objects = hsmObjects();
    const cfg = await write(good());
    const r = await check(cfg, '--deep');
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const out = JSON.parse(r.stdout) as { checks: Check[]; problems: number };
    assert.equal(out.problems, 0);
    assert.equal(out.checks.find((c) => c.subject === 'backends.hsm')?.status, 'ok');
    const store = out.checks.find((c) => c.subject === 'store')!;
    assert.equal(store.status, 'note');
    assert.match(store.message, /not initialised yet/);
    assert.deepEqual(
      readdirSync(token.dir).sort(),
      [...dir, `deep-${n}.yaml`].sort(),
      'something was created',
    );
    assert.equal(hsmObjects(), objects);
  });

  it('--deep after init: every check ok; the store is inspected read-only', async () => {
    const cfg = await write(good());
    assert.equal((await runKeywarden(['-c', cfg, 'init'])).code, 0);
    const storeDir = join(token.dir, `store-${n - 1}`);
    const files = readdirSync(storeDir).sort();
    const r = await check(cfg, '--deep');
    assert.equal(r.code, 0, r.stdout);
    const out = JSON.parse(r.stdout) as { checks: Check[] };
    assert.deepEqual(
      out.checks.map((c) => [c.subject, c.status]),
      [
        ['backends.hsm', 'ok'],
        ['store', 'ok'],
      ],
    );
    assert.deepEqual(readdirSync(storeDir).sort(), files);
  });

  it('--deep reports every problem at once: a wrong token label, Key Vault and PostgreSQL unreachable (exit 1)', async () => {
    const doc = good();
    hsm(doc).tokenLabel = 'no-such-token';
    doc.backends.vault = {
      type: 'azure',
      vaultUrl: `https://127.0.0.1:${await freePort()}/`,
      credential: {
        type: 'client-secret',
        tenantId: 't',
        clientId: 'c',
        secret: { file: join(token.dir, 'user-pin') },
      },
    };
    doc.store = { url: `postgres://postgres@127.0.0.1:${await freePort()}/nowhere` };
    const r = await check(await write(doc), '--deep');
    assert.equal(r.code, 1, r.stderr + r.stdout);
    const out = JSON.parse(r.stdout) as { checks: Check[]; problems: number };
    const problems = out.checks.filter((c) => c.status === 'problem').map((c) => [c.subject, c.code]);
    assert.deepEqual(problems, [
      ['backends.hsm.tokenLabel', 'BACKEND_TOKEN_NOT_FOUND'],
      ['backends.vault', 'BACKEND_UNAVAILABLE'],
      ['store', 'STORE_ERROR'],
    ]);
    // With a missing PIN file too, the machine's problem decides the exit code (3), still all listed.
    hsm(doc).pin = { file: join(token.dir, 'no-such-pin') };
    const both = await check(await write(doc), '--deep');
    assert.equal(both.code, 3);
    assert.equal(JSON.parse(both.stdout).problems, 4);
  });

  it('--deep: a module file that does not load, a store with a migration pending, one of a newer release, one that is no database', async () => {
    const cfg = await write(good());
    assert.equal((await runKeywarden(['-c', cfg, 'init'])).code, 0);
    const dbFile = join(token.dir, `store-${n - 1}`, 'kw.db');
    const digest = async () =>
      createHash('sha256')
        .update(await readFile(dbFile))
        .digest('hex');
    const deep = async (doc: Doc) => {
      const r = await check(await write(doc), '--deep');
      return { code: r.code, out: JSON.parse(r.stdout) as { checks: Check[]; problems: number } };
    };
    const atStore = (doc: Doc) => ({ ...doc, store: { url: `sqlite:${dbFile}` } }) as Doc;
    const storeCheck = (out: { checks: Check[] }) => out.checks.find((c) => c.subject === 'store')!;

    // A file where the module should be, but no PKCS#11 library: found by loading it, not by plain check.
    const notAModule = join(token.dir, 'not-a-module.so');
    await writeFile(notAModule, 'not an ELF file');
    const badModule = atStore(good());
    hsm(badModule).module = notAModule;
    assert.equal((await check(await write(badModule))).code, 0, 'plain check only sees the file exists');
    const loaded = await deep(badModule);
    assert.equal(loaded.code, 1);
    const moduleProblem = loaded.out.checks.find((c) => c.subject === 'backends.hsm.module');
    assert.equal(moduleProblem?.status, 'problem', JSON.stringify(loaded.out.checks));
    assert.match(moduleProblem.code ?? '', /^BACKEND_/);
    assert.match(moduleProblem.message, /not-a-module\.so/);

    // One migration this release has was never run: a note (init or serve runs it), exit 0.
    const sqlite = new Database(dbFile);
    const [first] = sqlite.prepare('SELECT * FROM migrations ORDER BY id DESC LIMIT 1').all() as {
      id: number;
      timestamp: number;
      name: string;
    }[];
    sqlite.prepare('DELETE FROM migrations WHERE id = ?').run(first!.id);
    sqlite.close();
    let before = await digest();
    const pending = await deep(atStore(good()));
    assert.equal(pending.code, 0, JSON.stringify(pending.out.checks));
    assert.equal(storeCheck(pending.out).status, 'note');
    assert.match(storeCheck(pending.out).message, new RegExp(`1 migration\\(s\\) pending.*${first!.name}`));
    assert.equal(await digest(), before, 'the store was changed');

    // A migration this release does not know: the store is a newer keywarden's, a problem (exit 1).
    const newer = new Database(dbFile);
    newer
      .prepare('INSERT INTO migrations (timestamp, name) VALUES (?, ?)')
      .run(first!.timestamp, first!.name);
    newer
      .prepare('INSERT INTO migrations (timestamp, name) VALUES (?, ?)')
      .run(9999999999999, 'FromTheFuture9999999999999');
    newer.close();
    before = await digest();
    const future = await deep(atStore(good()));
    assert.equal(future.code, 1);
    assert.equal(storeCheck(future.out).status, 'problem');
    assert.equal(storeCheck(future.out).code, 'STORE_ERROR');
    assert.match(storeCheck(future.out).message, /FromTheFuture9999999999999.*newer keywarden/);
    assert.equal(await digest(), before, 'the store was changed');

    // A file at the store's path that is no SQLite database: a problem, and left as it was.
    const junk = join(token.dir, 'junk.db');
    await writeFile(junk, 'this is not a database, and it is not empty either: '.repeat(100));
    const junkDoc = good();
    junkDoc.store = { url: `sqlite:${junk}` };
    const broken = await deep(junkDoc);
    assert.equal(broken.code, 1, JSON.stringify(broken.out.checks));
    assert.equal(storeCheck(broken.out).status, 'problem');
    assert.equal(storeCheck(broken.out).code, 'STORE_ERROR');
    assert.equal(
      await readFile(junk, 'utf8'),
      'this is not a database, and it is not empty either: '.repeat(100),
    );
  });

  it('--deep on an empty PostgreSQL database: a note, and still no table in it', async () => {
    const url = await pg.createDatabase('deep');
    const doc = good();
    doc.store = { url };
    const r = await check(await write(doc), '--deep');
    assert.equal(r.code, 0, r.stdout);
    const store = (JSON.parse(r.stdout) as { checks: Check[] }).checks.find((c) => c.subject === 'store')!;
    assert.equal(store.status, 'note');
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      const { rows } = await c.query("SELECT 1 FROM information_schema.tables WHERE table_schema = 'public'");
      assert.equal(rows.length, 0);
    } finally {
      await c.end();
    }
  });
});
