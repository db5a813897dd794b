/**
 * The admin API on the daemon's unix socket, end to end: an operator in the socket's group runs
 * the real CLI as their own (non-root) user and manages keys and clients with no access to the
 * PIN, the config or the store; a user outside the group is refused by the socket itself; bad
 * input on every admin route is refused and changes nothing; with no daemon the CLI says so
 * (exit 9) and never falls back, while `--local` works and is audited as local; a stale socket
 * is cleared at start-up and nothing else at its path is ever removed.
 */
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import * as http from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ADMIN_OPERATIONS, adminPath } from '../../src/admin';
import { EXIT } from '../../src/cli/exit-codes';
import { startDaemon, startServe, type Daemon } from '../helpers/daemon';
import { canSwitchUsers, ensureGroup, ensureUser, runKeywardenAs } from '../helpers/os-users';

const ADMIN_GROUP = 'kw-test-admin';
const OPERATOR = 'kw-test-operator';
const OUTSIDER = 'kw-test-outsider';

interface Answer {
  status: number;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
}

/** One raw request on the admin socket (what any local client could send). */
function adminRequest(
  socketPath: string,
  path: string,
  opts: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        agent: false,
        method: opts.method ?? 'POST',
        path,
        headers: {
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Answer['body'] });
          } catch {
            reject(new Error(`not JSON (${res.statusCode}): ${text}`));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Every row of the tables an admin request could change (keys, clients, the audit log). */
function snapshot(dbFile: string) {
  const conn = new Database(dbFile, { readonly: true });
  try {
    return ['keys', 'clients', 'audit_records'].map((t) => [
      t,
      conn.prepare(`SELECT * FROM "${t}" ORDER BY 1`).all(),
    ]);
  } finally {
    conn.close();
  }
}

describe('admin API on the unix socket', function () {
  this.timeout(300_000);
  let daemon: Daemon;
  let socketDir: string;
  let socketPath: string;
  let dbFile: string;
  let operatorUid: number;
  let switchUsers: boolean;

  before(async () => {
    switchUsers = canSwitchUsers();
    if (switchUsers) {
      ensureGroup(ADMIN_GROUP);
      operatorUid = ensureUser(OPERATOR, [ADMIN_GROUP]);
      ensureUser(OUTSIDER, []);
    }
    // A directory other users may traverse: the socket's own mode and group are the access control.
    socketDir = mkdtempSync(join(tmpdir(), 'kw-admin-'));
    chmodSync(socketDir, 0o755);
    socketPath = join(socketDir, 'admin.sock');
    daemon = await startDaemon({
      scopes: [{ name: 'demo' }],
      logLevel: 'info',
      admin: { socket: { path: socketPath, group: switchUsers ? ADMIN_GROUP : null } },
    });
    dbFile = join(daemon.token.dir, 'keywarden.db');
  });

  after(async () => {
    await daemon?.stop();
    rmSync(socketDir, { recursive: true, force: true });
  });

  it('the socket is mode 0660 in the configured group, and admin routes are not on the public listener', async () => {
    const st = lstatSync(socketPath);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
    if (switchUsers) assert.equal(st.gid, ensureGroup(ADMIN_GROUP));
    const pub = await fetch(`${daemon.baseUrl}${adminPath('keys.list')}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(pub.status, 404);
    const onSocket = await adminRequest(socketPath, adminPath('keys.list'), { body: '{}' });
    assert.equal(onSocket.status, 200);
  });

  describe('bad input on every admin route: a clear 4xx, nothing changed', () => {
    for (const op of ADMIN_OPERATIONS) {
      it(`${op.name}`, async () => {
        const before = snapshot(dbFile);
        const path = adminPath(op.name);
        const cases: [string, Parameters<typeof adminRequest>[2], number][] = [
          ['invalid JSON', { body: '{"scope":' }, 400],
          ['not an object', { body: '[]' }, 400],
          ['an unknown member', { body: '{"bogus":true}' }, 400],
          ['no body', {}, 400],
          ['text/plain', { body: 'keys', headers: { 'content-type': 'text/plain' } }, 415],
          ['a malformed operator claim', { body: '{}', headers: { 'x-keywarden-os-user': 'a b' } }, 400],
          ['GET', { method: 'GET' }, 404],
        ];
        for (const [what, req, status] of cases) {
          const r = await adminRequest(socketPath, path, req);
          assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
          assert.equal(r.body.error?.code, 'REQUEST_INVALID', what);
          assert.ok((r.body.error?.message.length ?? 0) > 0, what);
        }
        assert.deepEqual(snapshot(dbFile), before, 'the store changed');
      });
    }

    it('wrong types and values the use cases refuse; an unknown route', async () => {
      const before = snapshot(dbFile);
      const post = (name: string, body: unknown) =>
        adminRequest(socketPath, adminPath(name), { body: JSON.stringify(body) });
      for (const [name, body, status, code] of [
        ['keys.rotate', { scope: 7 }, 400, 'REQUEST_INVALID'],
        ['keys.rotate', { scope: 'nope' }, 404, 'SCOPE_NOT_FOUND'],
        ['keys.revoke', { kid: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', reason: 'x' }, 404, 'KEY_NOT_FOUND'],
        ['keys.revoke', { kid: 'AAAAAAAAAAAAAAAA', reason: '' }, 400, 'REQUEST_INVALID'],
        ['scopes.plan', { scope: 'demo', rotations: 1000 }, 400, 'REQUEST_INVALID'],
        [
          'tokens.sign',
          { scope: 'demo', claims: { aud: 'demo-api', iss: 'https://evil.test' } },
          400,
          'CLAIMS_INVALID',
        ],
        ['clients.add', { name: 'x', grants: { nope: ['sign'] } }, 404, 'SCOPE_NOT_FOUND'],
        ['clients.add', { name: 'x', grants: { demo: ['admin'] } }, 400, 'REQUEST_INVALID'],
        ['clients.remove', { client: 'nobody' }, 404, 'CLIENT_NOT_FOUND'],
        ['audit.prune', { before: '2020-01-01', olderThanSeconds: 5 }, 400, 'REQUEST_INVALID'],
        ['audit.prune', { before: 'yesterday' }, 400, 'REQUEST_INVALID'],
        ['audit.verify', { witnesses: [{ seq: 1, hash: 'zz' }] }, 400, 'REQUEST_INVALID'],
      ] as const) {
        const r = await post(name, body);
        assert.equal(r.status, status, `${name} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error?.code, code, `${name} ${JSON.stringify(body)}`);
      }
      const unknown = await adminRequest(socketPath, '/admin/v1/keys/explode', { body: '{}' });
      assert.equal(unknown.status, 404);
      const big = await adminRequest(socketPath, adminPath('tokens.verify'), {
        body: JSON.stringify({ scope: 'demo', audience: 'a', token: 'x'.repeat(70_000) }),
      });
      assert.equal(big.status, 413);
      assert.deepEqual(snapshot(dbFile), before, 'the store changed');
    });
  });

  describe('an operator in the admin group, who cannot read the PIN', () => {
    before(function () {
      if (!switchUsers) this.skip(); // needs root to create users and switch to them
      // The PIN file unreadable to everyone but root (the daemon logged in with it at start).
      chmodSync(join(daemon.token.dir, 'user-pin'), 0o000);
    });
    after(() => chmodSync(join(daemon.token.dir, 'user-pin'), 0o600));
    const asOperator = (args: string[]) => runKeywardenAs(OPERATOR, ['--socket', socketPath, ...args]);

    it('cannot work directly: no config, PIN or store it can read', async () => {
      const pin = await runKeywardenAs(OPERATOR, ['-c', daemon.configPath, '--local', 'keys', 'list']);
      assert.equal(pin.code, EXIT.CONFIG, pin.stderr);
      assert.match(pin.stderr, /cannot read config file/);
      const cat = spawnSync('setpriv', [
        `--reuid=${OPERATOR}`,
        `--regid=${OPERATOR}`,
        '--init-groups',
        'cat',
        join(daemon.token.dir, 'user-pin'),
      ]);
      assert.notEqual(cat.status, 0, 'the operator can read the PIN file');
      assert.match(cat.stderr.toString(), /Permission denied/);
    });

    it('lists, rotates and revokes keys through the daemon, recorded as the operator', async () => {
      const listed = await asOperator(['--json', 'keys', 'list', '--scope', 'demo']);
      assert.equal(listed.code, 0, listed.stderr);
      const before = JSON.parse(listed.stdout) as { kid: string; state: string }[];
      const active = before.find((k) => k.state === 'active');
      assert.ok(active, listed.stdout);

      const rotated = await asOperator(['--json', 'keys', 'rotate', '--scope', 'demo']);
      assert.equal(rotated.code, 0, rotated.stderr);
      const next = (JSON.parse(rotated.stdout) as { kid: string; state: string }).kid;
      assert.ok(!before.some((k) => k.kid === next));

      const revoked = await asOperator([
        '--json',
        'keys',
        'revoke',
        '--reason',
        'test: admin e2e',
        // A kid may start with '-' (base64url): after '--' it is never read as an option.
        '--',
        active.kid,
      ]);
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.equal((JSON.parse(revoked.stdout) as { revoked: { state: string } }).revoked.state, 'revoked');

      const after = JSON.parse((await asOperator(['--json', 'keys', 'list', '--scope', 'demo'])).stdout) as {
        kid: string;
        state: string;
      }[];
      assert.equal(after.find((k) => k.kid === active.kid)?.state, 'revoked');
      assert.ok(after.some((k) => k.kid === next));
      // The JWKS no longer publishes the revoked key.
      const jwks = (await (await fetch(daemon.jwksUrl('demo'))).json()) as { keys: { kid: string }[] };
      assert.ok(!jwks.keys.some((k) => k.kid === active.kid));

      // The audit log names the transport and the (claimed) OS user; so does the daemon's log.
      const tail = await asOperator(['--json', 'audit', 'tail', '--kid', active.kid, '--limit', '50']);
      assert.equal(tail.code, 0, tail.stderr);
      const revokedRecord = (JSON.parse(tail.stdout) as { type: string; actor: string }[]).find(
        (r) => r.type === 'key.revoked',
      );
      assert.equal(
        revokedRecord?.actor,
        `admin-socket:${OPERATOR}(uid=${operatorUid},claimed)@${hostname()}`,
      );
      assert.match(
        daemon.output(),
        new RegExp(
          `"operator":"admin-socket:${OPERATOR}\\(uid=${operatorUid},claimed\\)@[^"]+","transport":"admin-socket","op":"keys.revoke"`,
        ),
      );
    });

    it('adds, lists and removes an API client; the secret it gets signs over HTTP', async () => {
      const added = await asOperator(['--json', 'clients', 'add', 'ops-e2e', '--grant', 'demo:sign']);
      assert.equal(added.code, 0, added.stderr);
      const { secret } = JSON.parse(added.stdout) as { secret: string };
      const sign = () =>
        fetch(`${daemon.baseUrl}/v1/scopes/demo/sign`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
          body: JSON.stringify({ claims: { sub: 'ops', aud: 'demo-api' } }),
        });
      assert.equal((await sign()).status, 200);

      const list = await asOperator(['--json', 'clients', 'list']);
      assert.equal(list.code, 0, list.stderr);
      const mine = (JSON.parse(list.stdout) as { name: string; trust: string }[]).find(
        (c) => c.name === 'ops-e2e',
      );
      assert.equal(mine?.trust, 'trusted');
      assert.ok(!list.stdout.includes(secret), 'a listing shows no secret');

      const removed = await asOperator(['clients', 'remove', 'ops-e2e']);
      assert.equal(removed.code, 0, removed.stderr);
      const deadline = Date.now() + 10_000;
      let status = 200;
      while (status === 200 && Date.now() < deadline) {
        status = (await sign()).status;
        if (status === 200) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(status, 401, 'the removed client still signs');
    });
  });

  it('refuses a user outside its group at the socket (exit 9), changing nothing', async function () {
    if (!switchUsers) this.skip();
    const before = snapshot(dbFile);
    for (const args of [
      ['keys', 'list'],
      ['keys', 'rotate', '--scope', 'demo'],
    ]) {
      const r = await runKeywardenAs(OUTSIDER, ['--socket', socketPath, ...args]);
      assert.equal(r.code, EXIT.DAEMON, r.stderr);
      assert.match(r.stderr, /DAEMON_UNREACHABLE: permission denied on the admin socket/);
    }
    assert.deepEqual(snapshot(dbFile), before);
  });

  describe('with the daemon stopped', () => {
    before(async () => {
      assert.equal(await daemon.shutdown(), 0, daemon.output());
    });

    it('removed its socket; the CLI says the daemon is not running (exit 9) and suggests --local', async () => {
      assert.ok(!existsSync(socketPath), 'the socket file was left behind');
      const before = snapshot(dbFile);
      for (const args of [
        ['keys', 'list'],
        ['keys', 'rotate', '--scope', 'demo'],
        ['clients', 'list'],
      ]) {
        const r = await daemon.cli(args);
        assert.equal(r.code, EXIT.DAEMON, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /DAEMON_UNREACHABLE: no keywarden daemon answers on the admin socket/);
        assert.ok(r.stderr.includes(socketPath), r.stderr);
        assert.match(r.stderr, /--local/);
        assert.equal(r.stdout, '');
      }
      assert.deepEqual(snapshot(dbFile), before, 'the store changed');
    });

    it('--local works without the daemon, recorded with the local transport and the OS user', async () => {
      const rotated = await daemon.cli(['--local', '--json', 'keys', 'rotate', '--scope', 'demo']);
      assert.equal(rotated.code, 0, rotated.stderr);
      const kid = (JSON.parse(rotated.stdout) as { kid: string }).kid;
      const tail = await daemon.cli(['--local', '--json', 'audit', 'tail', '--kid', kid]);
      const created = (JSON.parse(tail.stdout) as { type: string; actor: string }[]).find(
        (r) => r.type === 'key.created',
      );
      assert.equal(created?.actor, `local:root(uid=0)@${hostname()}`);
    });

    it('start-up removes a stale socket, and nothing that is not one', async () => {
      // A stale socket: its process died without removing it.
      const holder = spawn(process.execPath, [
        '-e',
        `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`,
      ]);
      await new Promise<void>((r) => holder.stdout.once('data', () => r()));
      // A live socket at the path: the daemon refuses to take it.
      const inUse = await startServe(daemon.configPath, { waitHealthy: false });
      const inUseExit = await inUse.exited;
      assert.equal(inUseExit.code, EXIT.CONFIG, inUse.output());
      assert.match(inUse.output(), /in use by a running process/);
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
      assert.ok(lstatSync(socketPath).isSocket(), 'the killed holder left its socket');
      const restarted = await startServe(daemon.configPath);
      try {
        assert.match(restarted.output(), /removed a stale admin socket/);
        const r = await daemon.cli(['--json', 'keys', 'list', '--scope', 'demo']);
        assert.equal(r.code, 0, r.stderr);
      } finally {
        await restarted.stop();
      }
      // A symbolic link and a regular file at the path are left alone, and the start refused.
      const target = join(socketDir, 'precious');
      writeFileSync(target, 'keep me');
      for (const [what, make] of [
        ['symbolic link', () => symlinkSync(target, socketPath)],
        ['not a socket', () => writeFileSync(socketPath, 'also keep me')],
      ] as const) {
        rmSync(socketPath, { force: true });
        make();
        const refused = await startServe(daemon.configPath, { waitHealthy: false });
        const exit = await refused.exited;
        assert.equal(exit.code, EXIT.CONFIG, refused.output());
        assert.match(refused.output(), new RegExp(what));
        assert.ok(existsSync(socketPath), `${what}: the path was removed`);
        assert.equal(readFileSync(target, 'utf8'), 'keep me');
      }
    });

    it('a socket group that does not exist stops the start (exit 3), naming it, before any socket is made', async () => {
      const doc = JSON.parse(readFileSync(daemon.configPath, 'utf8')) as Record<string, unknown>;
      doc.admin = { socket: { path: socketPath, group: 'kw-test-no-such-group' } };
      const file = daemon.configPath.replace(/\.yaml$/, '-no-group.yaml');
      writeFileSync(file, JSON.stringify(doc, null, 2));
      rmSync(socketPath, { force: true });
      const refused = await startServe(file, { waitHealthy: false });
      const exit = await refused.exited;
      assert.equal(exit.code, EXIT.CONFIG, refused.output());
      assert.match(refused.output(), /group kw-test-no-such-group does not exist: create it/);
      assert.doesNotMatch(refused.output(), /keywarden serving|admin socket listening/);
      assert.ok(!existsSync(socketPath), 'a socket was made');
    });
  });
});
