/**
 * Nothing secret reaches a log: the real CLI and a real daemon run at log level debug against a
 * token whose PIN the test knows, an API client is added, tokens are signed and verified over
 * HTTP and through the CLI, credentials are sent wrong on purpose. Every byte the processes
 * write to stdout and stderr (except the one place a command prints a credential by design:
 * `clients add` shows the new secret, `sign` prints the token) is searched for the PIN, the SO
 * PIN, the client secret, every issued token and anything shaped like a JWT. The audit log is
 * searched too.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { cliCommand, runKeywarden, type CliResult } from '../helpers/cli';
import { freePort } from '../helpers/daemon';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

/** A complete compact JWS/JWT: a JOSE header (`eyJ`) and two more base64url segments. */
const JWT_RE = /eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}/;
/** Any three long base64url segments joined by dots, header or not. */
const THREE_SEGMENTS_RE = /[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}/;

describe('no secrets in logs (CLI and daemon at debug level)', function () {
  this.timeout(300_000);
  let token: SoftHsmToken;
  let configPath: string;
  let dbPath: string;
  /** Everything that counts as log output. */
  let logs = '';
  const issued: string[] = [];
  let secret = '';

  const cli = async (args: string[], keepStdout = true): Promise<CliResult> => {
    const r = await runKeywarden(['-c', configPath, '--local', '--log-level', 'debug', ...args]);
    logs += r.stderr + (keepStdout ? r.stdout : '');
    return r;
  };

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    dbPath = join(token.dir, 'kw.db');
    const port = await freePort();
    const doc = testConfigDocument(
      token,
      [{ name: 'consumer', issuer: `http://127.0.0.1:${port}/scopes/consumer` }],
      {
        logLevel: 'debug',
        store: { url: `sqlite:${dbPath}` },
        server: { host: '127.0.0.1', port, keyRefreshSeconds: 1 },
        audit: { checkpointEveryRecords: 2 },
      },
    );
    configPath = join(token.dir, 'keywarden.json');
    await writeFile(configPath, JSON.stringify(doc), { mode: 0o600 });

    assert.equal((await cli(['init'])).code, 0);
    const added = await cli(
      ['--json', 'clients', 'add', 'billing', '--grant', 'consumer:sign,verify'],
      false,
    );
    assert.equal(added.code, 0, added.stderr);
    secret = (JSON.parse(added.stdout) as { secret: string }).secret;
    assert.ok(secret.length >= 16);
    await cli(['keys', 'rotate', '--scope', 'consumer']);

    // The daemon, at debug level, every byte captured.
    const [cmd, ...pre] = cliCommand();
    const daemon = spawn(
      cmd!,
      [...pre, '-c', configPath, '--log-level', 'debug', 'serve', '--workers', '1'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    daemon.stdout.on('data', (d: Buffer) => (logs += d.toString()));
    daemon.stderr.on('data', (d: Buffer) => (logs += d.toString()));
    const exited = new Promise<void>((r) => daemon.once('exit', () => r()));
    const base = `http://127.0.0.1:${port}`;
    try {
      for (let i = 0; ; i++) {
        const ok = await fetch(`${base}/healthz`)
          .then((r) => r.ok)
          .catch(() => false);
        if (ok) break;
        if (i > 600 || daemon.exitCode !== null)
          throw new Error(`daemon did not start:\n${logs.slice(-4000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const post = (path: string, body: unknown, auth: string) =>
        fetch(`${base}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: auth },
          body: JSON.stringify(body),
        });
      for (let i = 0; i < 5; i++) {
        const r = await post(
          '/v1/scopes/consumer/sign',
          { claims: { sub: `user-${i}`, aud: 'consumer-api' } },
          `Bearer ${secret}`,
        );
        assert.equal(r.status, 200, await r.clone().text());
        issued.push(((await r.json()) as { token: string }).token);
      }
      const v = await post(
        '/v1/scopes/consumer/verify',
        { token: issued[0], audience: 'consumer-api' },
        `Bearer ${secret}`,
      );
      assert.equal(v.status, 200);
      // Wrong credentials, including a JWT where the secret belongs: refused, and not logged.
      assert.equal(
        (await post('/v1/scopes/consumer/sign', { claims: { aud: 'consumer-api' } }, `Bearer ${secret}x`))
          .status,
        401,
      );
      assert.equal(
        (await post('/v1/scopes/consumer/sign', { claims: { aud: 'consumer-api' } }, `Bearer ${issued[1]}`))
          .status,
        401,
      );
      assert.equal(
        (
          await post(
            '/v1/scopes/consumer/verify',
            { token: `${issued[2]}x`, audience: 'consumer-api' },
            `Bearer ${secret}`,
          )
        ).status,
        200,
      );
      assert.equal((await fetch(`${base}/scopes/consumer/.well-known/jwks.json`)).status, 200);
    } finally {
      daemon.kill('SIGTERM');
      const killer = setTimeout(() => daemon.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
    }

    // Operator commands after the daemon ran.
    const signed = await cli(
      ['sign', '--scope', 'consumer', '--claims', '{"sub":"ops","aud":"consumer-api"}'],
      false,
    );
    assert.equal(signed.code, 0, signed.stderr);
    issued.push(signed.stdout.trim());
    assert.match(signed.stdout, JWT_RE, 'the sign command prints the token (kept out of the searched logs)');
    assert.equal(
      (await cli(['verify', '--scope', 'consumer', '--audience', 'consumer-api', issued.at(-1)!])).code,
      0,
    );
    await cli(['clients', 'list']);
    await cli(['audit', 'checkpoint']);
    await cli(['--json', 'audit', 'tail', '--limit', '200']);
    assert.equal((await cli(['audit', 'verify'])).code, 0);
    await cli(['hsm', 'check']);
    await cli(['hsm', 'status']);
  });

  after(async () => token?.cleanup());

  it('logged at debug level at all (the search below is not vacuous)', () => {
    assert.ok(logs.includes('"level":20'), 'no debug line was captured');
    assert.ok(logs.includes('keywarden serving') || logs.includes('"msg"'), 'no daemon log line captured');
    assert.ok(issued.length >= 6);
  });

  it('no PIN, SO PIN or client secret in any log line', () => {
    assert.ok(!logs.includes(token.pin), 'the user PIN is in the logs');
    assert.ok(!logs.includes(token.soPin), 'the SO PIN is in the logs');
    assert.ok(!logs.includes(secret), 'the client secret is in the logs');
  });

  it('no issued token and nothing shaped like a JWT in any log line', () => {
    for (const t of issued) {
      assert.ok(!logs.includes(t), 'an issued token is in the logs');
      assert.ok(!logs.includes(t.split('.')[2]!), 'a token signature is in the logs');
    }
    assert.doesNotMatch(logs, JWT_RE);
    assert.doesNotMatch(logs, THREE_SEGMENTS_RE);
  });

  it('the audit log holds none of them either', () => {
    const db = new Database(dbPath, { readonly: true });
    try {
      const text = (db.prepare('SELECT type, actor, scope, kid, data FROM audit_records').all() as object[])
        .map((r) => JSON.stringify(r))
        .join('\n');
      const head = JSON.stringify(db.prepare('SELECT * FROM audit_head').get());
      assert.ok(
        text.includes('sign.activity') || text.includes('client'),
        'the audit log is unexpectedly empty',
      );
      for (const s of [token.pin, token.soPin, secret, ...issued]) {
        assert.ok(!text.includes(s) && !head.includes(s), 'a secret is in the audit log');
      }
      assert.doesNotMatch(text + head, JWT_RE);
      assert.doesNotMatch(text + head, THREE_SEGMENTS_RE);
    } finally {
      db.close();
    }
  });
});
