/**
 * The daemon's signals and start-up, against real `keywarden serve` processes (issue #17: SIGHUP
 * reload and the busy port; issue #18 item 3: SIGTERM drain), under load from client loops in
 * this process, with keep-alive connections and with one connection per request:
 *
 * - SIGHUP with `--workers 2`: a scope is added and another removed, a policy change shows, an
 *   invalid file and a restart-only change are refused with the running config kept (logged,
 *   counted, audited), and not one request fails throughout.
 * - SIGTERM with `--workers 2` (and one process): requests in flight finish, requests arriving
 *   during the drain get 503 SHUTTING_DOWN with `Connection: close`, no connection is reset, and
 *   the daemon exits 0.
 * - A port another process holds: `serve` exits 8 (LISTEN_FAILED) with the address and the reason,
 *   never claims to serve, and writes nothing.
 */
import { strict as assert } from 'node:assert';
import { createServer, type Server } from 'node:net';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { WORKER_HEADER } from '../../src/cluster/worker-identity';
import { runKeywarden } from '../helpers/cli';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { startLoad, type LoadTarget } from '../helpers/load';
import { parseExposition } from '../helpers/prometheus';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken } from '../helpers/softhsm';
import { until } from '../helpers/wait';

interface Reply {
  status: number;
  worker: number;
  body: string;
}

/** One GET on a fresh connection, so the cluster's round robin reaches every worker in turn. */
function fresh(url: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () =>
        resolve({ status: r.statusCode ?? 0, worker: Number(r.headers[WORKER_HEADER]), body }),
      );
      r.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** `probe` answered true by each of `workers` worker slots (fresh connections until all were seen). */
async function onEveryWorker(
  url: string,
  workers: number,
  probe: (r: Reply) => boolean,
): Promise<true | undefined> {
  const seen = new Set<number>();
  for (let i = 0; i < workers * 6 && seen.size < workers; i++) {
    const r = await fresh(url);
    if (!probe(r)) return undefined;
    seen.add(r.worker);
  }
  return seen.size === workers ? true : undefined;
}

const jwksKeys = (r: Reply): number => (JSON.parse(r.body) as { keys: unknown[] }).keys.length;

async function metrics(daemon: Daemon): Promise<Map<string, number>> {
  const r = await fetch(`${daemon.baseUrl}/metrics`);
  assert.equal(r.status, 200);
  return parseExposition(await r.text()).samples;
}

async function addSigner(daemon: Daemon, scope: string): Promise<string> {
  const r = await daemon.cli(['--json', 'clients', 'add', `loader-${scope}`, '--grant', `${scope}:sign`]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { secret: string }).secret;
}

/** The JWKS, discovery and sign routes of `scope`: the hot anonymous route and an HSM signature. */
function scopeTargets(scope: string, secret: string): LoadTarget[] {
  return [
    { method: 'GET', path: `/scopes/${scope}/.well-known/jwks.json` },
    {
      method: 'POST',
      path: `/v1/scopes/${scope}/sign`,
      headers: { authorization: `Bearer ${secret}` },
      body: JSON.stringify({ claims: { sub: 'load', aud: `${scope}-api` } }),
    },
    { method: 'GET', path: `/scopes/${scope}/.well-known/openid-configuration` },
  ];
}

describe('signals (e2e): SIGHUP reload, SIGTERM drain, a busy port', function () {
  this.timeout(300_000);

  for (const workers of [2, 1])
    describe(`SIGHUP under load, --workers ${workers}`, () => {
      let daemon: Daemon;

      before(async () => {
        daemon = await startDaemon({
          scopes: [{ name: 'alpha' }, { name: 'beta' }],
          workers,
          workerHeader: true,
          logLevel: 'info',
        });
      });

      after(async () => {
        await daemon?.stop();
      });

      it('adds and removes scopes, refuses an invalid or restart-only file keeping the running config; no request fails', async () => {
        const secret = await addSigner(daemon, 'alpha');
        const targets = scopeTargets('alpha', secret);
        const loads = [
          startLoad({ baseUrl: daemon.baseUrl, targets, keepAlive: true, concurrency: 4 }),
          startLoad({ baseUrl: daemon.baseUrl, targets, keepAlive: false, concurrency: 2 }),
        ];
        const gamma = `${daemon.baseUrl}/scopes/gamma/.well-known/jwks.json`;
        const beta = `${daemon.baseUrl}/scopes/beta/.well-known/jwks.json`;
        try {
          await until(
            'load running',
            async () => (loads.every((l) => l.report().ok >= 20) ? true : undefined),
            {
              context: daemon.output,
            },
          );
          assert.equal(await onEveryWorker(beta, workers, (r) => r.status === 200 && jwksKeys(r) > 0), true);
          assert.equal((await fresh(gamma)).status, 404);

          // 1. beta removed, gamma added, alpha's keys to sign 12 minutes instead of 10.
          type ScopeDoc = {
            name: string;
            issuer: string;
            audiences: string[];
            policy: Record<string, string>;
          };
          const original = JSON.parse(readFileSync(daemon.configPath, 'utf8')) as {
            scopes: ScopeDoc[];
          } & Record<string, unknown>;
          const [alpha, betaScope] = original.scopes as [ScopeDoc, ScopeDoc];
          const reloaded = {
            ...original,
            scopes: [
              { ...alpha, policy: { ...alpha.policy, activeFor: '12m' } },
              {
                ...betaScope,
                name: 'gamma',
                issuer: `${daemon.baseUrl}/scopes/gamma`,
                audiences: ['gamma-api'],
              },
            ],
          };
          writeFileSync(daemon.configPath, JSON.stringify(reloaded, null, 2));
          process.kill(daemon.pid, 'SIGHUP');
          await until(
            'gamma served with its key and beta gone, on every worker',
            async () =>
              (await onEveryWorker(gamma, workers, (r) => r.status === 200 && jwksKeys(r) > 0)) &&
              (await onEveryWorker(beta, workers, (r) => r.status === 404)),
            { ms: 60_000, context: daemon.output },
          );
          let m = await metrics(daemon);
          assert.equal(m.get('keywarden_config_reloads_total{result="applied"}'), 1);
          assert.equal(m.get('keywarden_config_last_reload_successful'), 1);
          assert.equal(m.get('keywarden_scope_active_for_seconds{scope="alpha"}'), 720);
          assert.equal(m.get('keywarden_scope_active_for_seconds{scope="gamma"}'), 600);
          assert.equal(m.get('keywarden_scope_active_for_seconds{scope="beta"}'), undefined);
          // The policy change applies to keys made from now on; the running key keeps its timeline.
          const windowSeconds = (k: { activateAt: string; retireAt: string }) =>
            (Date.parse(k.retireAt) - Date.parse(k.activateAt)) / 1000;
          const rotated = await daemon.cli(['--json', 'keys', 'rotate', '--scope', 'alpha']);
          assert.equal(rotated.code, 0, rotated.stderr);
          const next = JSON.parse(rotated.stdout) as { kid: string; activateAt: string; retireAt: string };
          assert.equal(windowSeconds(next), 720);
          const listed = await daemon.cli(['--json', 'keys', 'list', '--scope', 'alpha']);
          const alphaKeys = JSON.parse(listed.stdout) as {
            kid: string;
            state: string;
            activateAt: string;
            retireAt: string;
          }[];
          const signing = alphaKeys.find((k) => k.state === 'active');
          assert.ok(signing && signing.kid !== next.kid, listed.stdout);
          assert.equal(windowSeconds(signing), 600);

          // 2. An invalid file (a problem in each scope): refused, every problem logged, the running
          // config kept.
          const invalid = {
            ...reloaded,
            scopes: [
              { ...reloaded.scopes[0], policy: { ...alpha.policy, verifyGrace: '1m' } },
              { ...reloaded.scopes[1], policy: { ...alpha.policy, prepublish: '1s' } },
            ],
          };
          writeFileSync(daemon.configPath, JSON.stringify(invalid, null, 2));
          process.kill(daemon.pid, 'SIGHUP');
          await until(
            'the invalid file refused',
            async () =>
              (await metrics(daemon)).get('keywarden_config_reloads_total{result="refused"}') === 1
                ? true
                : undefined,
            { context: daemon.output },
          );
          // Every problem logged, one line each (the log is written asynchronously: wait for it).
          const problemLines = () =>
            daemon
              .output()
              .split('\n')
              .filter((l) => l.includes('"config reload: problem"'));
          await until(
            'both problems logged',
            async () =>
              problemLines().some((l) => l.includes('verifyGrace') && l.includes('alpha')) &&
              problemLines().some((l) => l.includes('prepublish') && l.includes('gamma'))
                ? true
                : undefined,
            { context: daemon.output },
          );
          m = await metrics(daemon);
          assert.equal(m.get('keywarden_config_last_reload_successful'), 0);
          assert.equal(m.get('keywarden_config_reloads_total{result="applied"}'), 1);

          // 3. A valid file that moves the port: only a restart can do that; refused as a whole.
          const port = (reloaded as unknown as { server: { port: number } }).server.port;
          const moved = {
            ...reloaded,
            server: { ...(reloaded as unknown as { server: object }).server, port: port + 1 },
            scopes: [
              ...reloaded.scopes,
              { ...betaScope, name: 'delta', issuer: `${daemon.baseUrl}/scopes/delta` },
            ],
          };
          writeFileSync(daemon.configPath, JSON.stringify(moved, null, 2));
          process.kill(daemon.pid, 'SIGHUP');
          await until(
            'the restart-only change refused',
            async () =>
              (await metrics(daemon)).get('keywarden_config_reloads_total{result="refused"}') === 2
                ? true
                : undefined,
            { context: daemon.output },
          );
          await until(
            'the restart-only field logged',
            async () =>
              /server\.port: changed, and takes effect only on a restart/.test(daemon.output())
                ? true
                : undefined,
            { context: daemon.output },
          );

          // The running config is still the one applied in step 1, on every worker.
          assert.equal(await onEveryWorker(gamma, workers, (r) => r.status === 200 && jwksKeys(r) > 0), true);
          assert.equal(await onEveryWorker(beta, workers, (r) => r.status === 404), true);
          assert.equal(
            await onEveryWorker(
              `${daemon.baseUrl}/scopes/delta/.well-known/jwks.json`,
              workers,
              (r) => r.status === 404,
            ),
            true,
          );
        } finally {
          const reports = await Promise.all(loads.map((l) => l.stop()));
          for (const r of reports) {
            assert.deepEqual(
              r.failures,
              [],
              `failed requests:\n${r.failures.join('\n')}\n${daemon.output()}`,
            );
            assert.equal(r.drained + r.refused, 0);
            assert.ok(r.ok > 0);
          }
        }

        // The audit log holds the reload and both refusals, each with the file's digest.
        const audit = await daemon.cli(['--json', 'audit', 'tail', '--limit', '200']);
        assert.equal(audit.code, 0, audit.stderr);
        const records = JSON.parse(audit.stdout) as {
          type: string;
          actor: string;
          data: Record<string, unknown>;
        }[];
        const applied = records.filter((r) => r.type === 'config.reloaded');
        const refused = records.filter((r) => r.type === 'config.reload-refused');
        assert.equal(applied.length, 1);
        assert.deepEqual(applied[0]!.data.scopesAdded, ['gamma']);
        assert.deepEqual(applied[0]!.data.scopesRemoved, ['beta']);
        assert.deepEqual(applied[0]!.data.scopesChanged, ['alpha']);
        assert.equal(refused.length, 2);
        for (const r of [...applied, ...refused]) assert.match(String(r.data.sha256), /^[0-9a-f]{64}$/);
      });
    });

  describe('SIGTERM under load', () => {
    for (const [workers, keepAlive] of [
      [2, true],
      [2, false],
      [1, true],
    ] as const) {
      const load = keepAlive ? 'keep-alive' : 'one-connection-per-request';
      it(`--workers ${workers}, ${load} load: requests finish or get 503 + Connection: close, no reset, exit 0`, async () => {
        const daemon = await startDaemon({ scopes: [{ name: 'demo' }], workers });
        try {
          const secret = await addSigner(daemon, 'demo');
          const l = startLoad({
            baseUrl: daemon.baseUrl,
            targets: scopeTargets('demo', secret),
            keepAlive,
            concurrency: 6,
          });
          await until('load running', async () => (l.report().ok >= 300 ? true : undefined), {
            context: daemon.output,
          });
          const code = await daemon.shutdown();
          const report = await l.done;
          assert.deepEqual(
            report.failures,
            [],
            `failed requests:\n${report.failures.join('\n')}\n${daemon.output()}`,
          );
          assert.equal(code, 0, daemon.output());
          // The drain answered: loops were told to go, not cut off.
          assert.ok(report.drained > 0, JSON.stringify(report));
        } finally {
          await daemon.stop();
        }
      });
    }
  });

  describe('a port that cannot be bound', () => {
    let blocker: Server;
    let port: number;

    before(async () => {
      blocker = createServer();
      await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
      port = (blocker.address() as { port: number }).port;
    });

    after(() => new Promise<void>((r) => blocker.close(() => r())));

    /** Every file under `dir` with its size and mtime. */
    const snapshot = (dir: string): Record<string, string> => {
      const out: Record<string, string> = {};
      const walk = (d: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const p = join(d, e.name);
          if (e.isDirectory()) walk(p);
          else {
            const s = statSync(p);
            out[p] = `${s.size}:${s.mtimeMs}`;
          }
        }
      };
      walk(dir);
      return out;
    };

    for (const workers of [2, 1]) {
      it(`serve --workers ${workers}: exits 8 (LISTEN_FAILED) naming the address and reason, never serving, writing nothing`, async () => {
        const token = await createSoftHsmToken();
        try {
          writeFileSync(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
          const configPath = join(token.dir, 'keywarden.yaml');
          const doc = testConfigDocument(token, [{ name: 'demo' }], {
            logLevel: 'info',
            server: { host: '127.0.0.1', port },
          });
          writeFileSync(configPath, JSON.stringify(doc, null, 2));
          const before = snapshot(token.dir);
          const r = await runKeywarden(['-c', configPath, 'serve', '--workers', String(workers)], {
            env: { KEYWARDEN_CLI_MAIN: '1' },
            timeoutMs: 45_000,
          });
          const output = r.stdout + r.stderr;
          assert.equal(r.code, 8, output);
          assert.match(r.stderr, new RegExp(`LISTEN_FAILED: cannot listen on 127\\.0\\.0\\.1:${port}: `));
          assert.match(r.stderr, /already in use.*EADDRINUSE/);
          assert.doesNotMatch(output, /keywarden serving/);
          // No store created, no key generated, nothing else touched.
          assert.deepEqual(snapshot(token.dir), before);
        } finally {
          await token.cleanup();
        }
      });
    }
  });
});
