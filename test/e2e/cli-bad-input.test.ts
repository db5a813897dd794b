import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { runKeywarden } from '../helpers/cli';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

/** Every CLI command refuses bad input with a clear message and a meaningful exit code, and writes nothing. */
describe('CLI: bad input gets a clear error and changes nothing', function () {
  this.timeout(120_000);
  let token: SoftHsmToken;
  let configPath: string;
  const db = () => join(token.dir, 'keywarden.db');
  const write = async (name: string, doc: unknown) => {
    const p = join(token.dir, name);
    await writeFile(p, typeof doc === 'string' ? doc : stringify(doc));
    return p;
  };
  // No daemon runs here: every command works on the store and HSM directly (--local).
  const kw = (args: string[], cfg = configPath) => runKeywarden(['-c', cfg, '--local', ...args]);

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    configPath = await write('good.yaml', testConfigDocument(token, [{ name: 'demo' }]));
  });
  after(async () => token.cleanup());

  it('a malformed config: exit 3, every problem listed, no store created', async () => {
    const bad = await write('bad.yaml', {
      ...testConfigDocument(token, [
        { name: 'demo', policy: { verifyGrace: '1m', maxTokenTtl: '5m' } },
        { name: 'x', alg: 'none' },
      ]),
      store: { url: 'sqlite:bad.db' },
    });
    const r = await kw(['init'], bad);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /CONFIG_INVALID/);
    assert.match(r.stderr, /scopes\[0\]\.policy\.verifyGrace \(scope demo\)/);
    assert.match(r.stderr, /scopes\[1\]\.alg \(scope x\)/);
    assert.ok(!existsSync(join(token.dir, 'bad.db')), 'a store was created for an invalid config');
    const chk = await kw(['--json', 'config', 'check'], bad);
    assert.equal(chk.code, 3);
    assert.equal(JSON.parse(chk.stdout).error.details.length, 2);
  });

  it('YAML syntax errors and a missing file are config errors too', async () => {
    assert.equal((await kw(['config', 'check'], await write('syntax.yaml', 'scopes: [\n'))).code, 3);
    const missing = await kw(['config', 'check'], join(token.dir, 'nope.yaml'));
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /cannot read config file/);
  });

  it('a wrong PIN: exit 6 BACKEND_PIN_INCORRECT, the PIN not echoed, no key row left behind', async () => {
    await writeFile(join(token.dir, 'wrong-pin'), 'not-the-pin-123', { mode: 0o600 });
    const doc = testConfigDocument(token, [{ name: 'demo' }], { store: { url: 'sqlite:wrongpin.db' } });
    (doc.backends.hsm as { pin: unknown }).pin = { file: join(token.dir, 'wrong-pin') };
    const r = await kw(['init'], await write('wrongpin.yaml', doc));
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stderr, /BACKEND_PIN_INCORRECT|PIN/);
    assert.ok(!r.stderr.includes('not-the-pin-123') && !r.stdout.includes('not-the-pin-123'));
    const list = await kw(['--json', 'keys', 'list'], await write('wrongpin.yaml', doc));
    assert.deepEqual(JSON.parse(list.stdout), []);
  });

  it('a missing PKCS#11 module: exit 6 BACKEND_MODULE_NOT_FOUND, no key row left behind', async () => {
    const doc = testConfigDocument(token, [{ name: 'demo' }], { store: { url: 'sqlite:nomodule.db' } });
    (doc.backends.hsm as { module: string }).module = '/nonexistent/libpkcs11.so';
    const cfg = await write('nomodule.yaml', doc);
    const r = await kw(['init'], cfg);
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stderr, /BACKEND_MODULE_NOT_FOUND/);
    assert.deepEqual(JSON.parse((await kw(['--json', 'keys', 'list'], cfg)).stdout), []);
  });

  it('a store directory that cannot be made: exit 7 STORE_ERROR naming the path, not an internal error', async () => {
    // A file where the data directory should be (as unwritable as it gets for root).
    const blocked = join(token.dir, 'good.yaml', 'data');
    const cfg = await write('blocked.yaml', {
      ...testConfigDocument(token, [{ name: 'demo' }]),
      dataDir: blocked,
    });
    const r = await kw(['init'], cfg);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /STORE_ERROR/);
    assert.ok(r.stderr.includes(`cannot create the directory ${blocked}`), r.stderr);
    assert.match(r.stderr, /ENOTDIR/);
    assert.doesNotMatch(r.stderr, /internal error/);
    // Any other command does not try to make a store at all: there is none to read (exit 7 too).
    const list = await kw(['keys', 'list'], cfg);
    assert.equal(list.code, 7, list.stderr);
    assert.match(list.stderr, /STORE_NOT_INITIALIZED.*keywarden init/);
    assert.doesNotMatch(list.stderr, /internal error/);
  });

  describe('with an initialised store', () => {
    let token1: string;
    before(async () => {
      const init = await kw(['init']);
      assert.equal(init.code, 0, init.stderr);
      const s = await kw(['sign', '--scope', 'demo', '--claims', '{"sub":"alice","aud":"demo-api"}']);
      assert.equal(s.code, 0, s.stderr);
      token1 = s.stdout.trim();
    });
    /** Every row of every table: what a command must not change (SQLite may touch file bytes on open). */
    const snapshot = () => {
      const conn = new Database(db(), { readonly: true });
      try {
        const tables = conn
          .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
          .all() as { name: string }[];
        return tables.map((t) => [t.name, conn.prepare(`SELECT * FROM "${t.name}"`).all()]);
      } finally {
        conn.close();
      }
    };
    const unchanged = async (fn: () => Promise<void>) => {
      const before = snapshot();
      await fn();
      assert.deepEqual(snapshot(), before, 'the store changed');
    };

    it('verify: a valid token exits 0 with the claims; malformed, tampered or wrong-audience tokens exit 1 with a reason', async () => {
      const ok = await kw(['verify', '--scope', 'demo', '--audience', 'demo-api', token1]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(JSON.parse(ok.stdout).sub, 'alice');
      for (const [bad, reason] of [
        ['not.a.jwt', 'token_malformed'],
        ['garbage', 'token_malformed'],
        [token1.slice(0, -4) + (token1.endsWith('AAAA') ? 'BBBB' : 'AAAA'), 'signature_invalid'],
      ] as const) {
        const r = await kw(['verify', '--scope', 'demo', '--audience', 'demo-api', bad]);
        assert.equal(r.code, 1, `${bad}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(reason));
      }
      const aud = await kw(['--json', 'verify', '--scope', 'demo', '--audience', 'other', token1]);
      assert.equal(aud.code, 1);
      assert.equal(JSON.parse(aud.stdout).reason, 'audience_mismatch');
      const stdin = await runKeywarden(
        ['-c', configPath, '--local', 'verify', '--scope', 'demo', '--audience', 'demo-api', '-'],
        { input: token1 },
      );
      assert.equal(stdin.code, 0, stdin.stderr);
    });

    it('verify --typ: a JWT-typed token is typ_mismatch for an at+jwt verifier (exit 1); a bad --typ is exit 2', async () => {
      const at = await kw(['sign', '--scope', 'demo', '--typ', 'at+jwt', '--claims', '{"aud":"demo-api"}']);
      assert.equal(at.code, 0, at.stderr);
      // `keywarden [--json] verify` of `jwt` for demo-api in scope demo, accepting token type `typ`.
      const verifyAs = (typ: string, jwt: string, ...globalOpts: string[]) =>
        kw([...globalOpts, 'verify', '--scope', 'demo', '--audience', 'demo-api', '--typ', typ, jwt]);
      const accepted = await verifyAs('application/at+jwt', at.stdout.trim());
      assert.equal(accepted.code, 0, accepted.stderr);
      const refused = await verifyAs('at+jwt', token1, '--json');
      assert.equal(refused.code, 1, refused.stderr);
      assert.equal(JSON.parse(refused.stdout).reason, 'typ_mismatch');
      await unchanged(async () => {
        const bad = await verifyAs('at+jwt; x', token1);
        assert.equal(bad.code, 2, bad.stderr);
        assert.match(bad.stderr, /media type/);
      });
    });

    it('unknown scope: exit 4 for sign, verify, plan, jwks, keys list; nothing written', async () => {
      await unchanged(async () => {
        for (const args of [
          ['sign', '--scope', 'nope', '--claims', '{"aud":"x"}'],
          ['verify', '--scope', 'nope', '--audience', 'x', token1],
          ['plan', 'nope'],
          ['jwks', 'nope'],
          ['keys', 'list', '--scope', 'nope'],
          ['keys', 'rotate', '--scope', 'nope'],
        ]) {
          const r = await kw(args);
          assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
          assert.match(r.stderr, /SCOPE_NOT_FOUND/);
        }
      });
    });

    it('bad claims and usage errors: exit 2 with the rule broken; nothing written', async () => {
      await unchanged(async () => {
        for (const [claims, re] of [
          ['{not json', /not valid JSON/],
          ['[1,2]', /JSON object/],
          ['{"sub":"a"}', /aud/],
          ['{"aud":"demo-api","iss":"https://evil.test"}', /iss/],
          ['{"aud":"demo-api","exp":1}', /exp/],
        ] as const) {
          const r = await kw(['sign', '--scope', 'demo', '--claims', claims]);
          assert.equal(r.code, 2, `${claims}: ${r.stderr}`);
          assert.match(r.stderr, re);
        }
        assert.equal((await kw(['sign', '--scope', 'demo'])).code, 2);
        assert.equal((await kw(['keys', 'revoke', 'abc'])).code, 2); // --reason is required
        assert.equal((await kw(['plan', 'demo', '--rotations', 'many'])).code, 2);
        assert.equal((await kw(['no-such-command'])).code, 2);
      });
    });

    it('keys show/revoke of an unknown kid: exit 4, nothing written', async () => {
      await unchanged(async () => {
        const r = await kw([
          'keys',
          'revoke',
          'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
          '--reason',
          'test',
        ]);
        assert.equal(r.code, 4, r.stderr);
        assert.match(r.stderr, /KEY_NOT_FOUND/);
        assert.equal((await kw(['keys', 'show', 'nope-nope'])).code, 4);
      });
    });

    it('--help works on every command', async () => {
      for (const args of [
        [],
        ['keys'],
        ['keys', 'revoke'],
        ['sign'],
        ['verify'],
        ['plan'],
        ['serve'],
        ['config', 'check'],
      ]) {
        const r = await kw([...args, '--help']);
        assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stdout, /Usage: keywarden/);
      }
    });
  });
});
