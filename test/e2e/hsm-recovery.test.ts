/**
 * A running daemon heals after HSM faults without a restart (issue #18 item 1): the SoftHSM2 token
 * directory taken away and given back, and the p11-kit server that serves the token stopped and
 * started again. While a scope cannot sign, /readyz answers 503 naming the scope and the reason,
 * and `keywarden_scope_can_sign` is 0; within 10 s of the token coming back, it signs again.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { startP11KitServer, type P11KitServer } from '../helpers/p11kit-server';
import { until } from '../helpers/wait';

interface Answer {
  status: number;
  body: { token?: string; error?: { code: string; message: string } };
}

async function signOnce(daemon: Daemon, secret: string): Promise<Answer> {
  const res = await fetch(`${daemon.baseUrl}/v1/scopes/demo/sign`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ claims: { sub: 'alice', aud: 'demo-api' }, ttlSeconds: 60 }),
  });
  return { status: res.status, body: (await res.json()) as Answer['body'] };
}

async function readyz(
  daemon: Daemon,
): Promise<{ status: number; checks: Record<string, { ok: boolean; detail: string }> }> {
  const res = await fetch(`${daemon.baseUrl}/readyz`);
  const body = (await res.json()) as { checks: Record<string, { ok: boolean; detail: string }> };
  return { status: res.status, checks: body.checks };
}

async function canSignMetric(daemon: Daemon): Promise<string | undefined> {
  const text = await (await fetch(`${daemon.baseUrl}/metrics`)).text();
  return /^keywarden_scope_can_sign\{scope="demo"\} (\d)$/m.exec(text)?.[1];
}

async function addSigner(daemon: Daemon): Promise<string> {
  const r = await daemon.cli(['--json', 'clients', 'add', 'issuer', '--grant', 'demo:sign']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { secret: string }).secret;
}

/** Signs until it works; how long that took from `since` (ms). */
async function signsAgain(daemon: Daemon, secret: string, since: number): Promise<number> {
  await until(
    'a signature after the token came back',
    async () => ((await signOnce(daemon, secret)).status === 200 ? true : undefined),
    { ms: 15_000, everyMs: 100, context: () => daemon.output() },
  );
  return Date.now() - since;
}

describe('a running daemon heals after HSM faults (e2e)', function () {
  this.timeout(180_000);

  describe('SoftHSM2 loaded in the daemon: the token directory taken away for 5 s', () => {
    let daemon: Daemon;
    let secret: string;

    before(async () => {
      daemon = await startDaemon({ scopes: [{ name: 'demo' }] });
      secret = await addSigner(daemon);
    });

    after(async () => {
      await daemon?.stop();
    });

    it('answers 503 and is not ready (naming the scope and why) while it is away; signs within 10 s of its return, no restart', async () => {
      assert.equal((await signOnce(daemon, secret)).status, 200);
      assert.equal((await readyz(daemon)).status, 200);
      assert.equal(await canSignMetric(daemon), '1');

      const tokens = join(daemon.token.dir, 'tokens');
      await rename(tokens, `${tokens}.away`);
      let back: number;
      try {
        const during = await signOnce(daemon, secret);
        assert.equal(during.status, 503, JSON.stringify(during.body));
        assert.equal(during.body.error?.code, 'BACKEND_UNAVAILABLE');
        const r = await readyz(daemon);
        assert.equal(r.status, 503);
        assert.equal(r.checks['scope:demo']?.ok, false);
        assert.match(
          r.checks['scope:demo']?.detail ?? '',
          /scope demo cannot sign: backend hsm is not healthy: .*unavailable since/,
        );
        assert.equal(await canSignMetric(daemon), '0');
        await new Promise((res) => setTimeout(res, 5000));
      } finally {
        await rename(`${tokens}.away`, tokens);
        back = Date.now();
      }
      const ms = await signsAgain(daemon, secret, back);
      assert.ok(ms <= 10_000, `signed again ${ms} ms after the token came back`);
      assert.equal((await readyz(daemon)).status, 200);
      assert.equal(await canSignMetric(daemon), '1');
    });
  });

  describe("p11-kit's client in the daemon: the p11-kit server stopped and started again", () => {
    let daemon: Daemon;
    let secret: string;
    let server: P11KitServer;
    let dir: string;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'keywarden-p11kit-heal-'));
      daemon = await startDaemon({
        scopes: [{ name: 'demo' }],
        hsmModule: async (token) => {
          server = await startP11KitServer(token, { socketPath: join(dir, 'pkcs11') });
          return { module: server.modulePath, moduleEnv: server.moduleEnv, close: () => server.stop() };
        },
      });
      secret = await addSigner(daemon);
    });

    after(async () => {
      await daemon?.stop();
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('is not ready while the server is gone, and signs within 10 s of its return without a restart', async () => {
      assert.equal((await signOnce(daemon, secret)).status, 200);
      await server.stop();
      const during = await signOnce(daemon, secret);
      assert.equal(during.status, 503, JSON.stringify(during.body));
      const r = await readyz(daemon);
      assert.equal(r.status, 503);
      assert.match(r.checks['scope:demo']?.detail ?? '', /scope demo cannot sign/);
      server = await startP11KitServer(daemon.token, { socketPath: join(dir, 'pkcs11') });
      const ms = await signsAgain(daemon, secret, Date.now());
      assert.ok(ms <= 10_000, `signed again ${ms} ms after the server came back`);
      assert.equal((await readyz(daemon)).status, 200);
    });
  });
});
