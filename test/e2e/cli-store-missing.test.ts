import * as assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from 'pg';
import { stringify } from 'yaml';
import { runKeywarden } from '../helpers/cli';
import { startPostgres, type TestPostgres } from '../helpers/postgres';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

/**
 * #17: a command pointed at a store that does not exist said "no keys" (exit 0) after silently
 * creating an empty store. Now every command but `init` says to run `keywarden init`, exits 7
 * (STORE_NOT_INITIALIZED), and creates nothing: no file, no directory, no table.
 */
describe('CLI: a store that does not exist is refused, and nothing is created', function () {
  this.timeout(180_000);
  let token: SoftHsmToken;
  let pg: TestPostgres;

  before(async () => {
    [token, pg] = await Promise.all([createSoftHsmToken(), startPostgres()]);
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
  });
  after(async () => {
    await pg?.stop();
    await token?.cleanup();
  });

  const configWithStore = async (name: string, url: string) => {
    const p = join(token.dir, `${name}.yaml`);
    await writeFile(p, stringify(testConfigDocument(token, [{ name: 'demo' }], { store: { url } })));
    return p;
  };

  const READ_COMMANDS = [
    ['keys', 'list'],
    ['scopes', 'show', 'demo'],
    ['jwks', 'demo'],
    ['audit', 'tail'],
    ['clients', 'list'],
    ['keys', 'rotate', '--scope', 'demo'],
  ];

  it('SQLite: a missing file (in a missing directory) is refused by read and write commands alike', async () => {
    const cfg = await configWithStore('missing', 'sqlite:not-here/keywarden.db');
    const before = readdirSync(token.dir).sort();
    for (const args of READ_COMMANDS) {
      const r = await runKeywarden(['-c', cfg, '--local', ...args]);
      assert.equal(r.code, 7, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /STORE_NOT_INITIALIZED/);
      assert.match(r.stderr, /run `keywarden init`/);
      assert.doesNotMatch(r.stdout, /no keys/);
    }
    const json = await runKeywarden(['-c', cfg, '--local', '--json', 'keys', 'list']);
    assert.equal(JSON.parse(json.stdout).error.code, 'STORE_NOT_INITIALIZED');
    assert.ok(!existsSync(join(token.dir, 'not-here')), 'a store directory was created');
    assert.deepEqual(readdirSync(token.dir).sort(), before);
  });

  it('SQLite: init still creates the store, and then the same read command works', async () => {
    const cfg = await configWithStore('fresh', 'sqlite:fresh/keywarden.db');
    assert.equal((await runKeywarden(['-c', cfg, 'init'])).code, 0);
    const r = await runKeywarden(['-c', cfg, '--local', '--json', 'keys', 'list']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).length, 1);
  });

  it('PostgreSQL: an empty database is refused and gets no tables', async () => {
    const url = await pg.createDatabase('empty');
    const cfg = await configWithStore('pg', url);
    const r = await runKeywarden(['-c', cfg, '--local', 'keys', 'list']);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /STORE_NOT_INITIALIZED.*keywarden init/);
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      const { rows } = await c.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
      );
      assert.deepEqual(rows, []);
    } finally {
      await c.end();
    }
  });
});
