/**
 * `keywarden serve --workers 2` end to end: a real primary and two cluster workers on a fresh
 * SoftHSM2 token. Both workers answer, `/metrics` from either is the workers' sum plus the
 * primary's key lifecycle and process metrics, a SIGKILLed worker is replaced, a CLI revocation
 * reaches every worker's JWKS within the key-refresh bound, and SIGTERM to the primary lets
 * an in-flight request finish before everything exits with code 0.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { join, resolve } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { RestartBackoff } from '../../src/cluster';
import { WORKER_HEADER } from '../../src/cluster/worker-identity';
import { freePort } from '../helpers/daemon';
import { testConfigDocument } from '../helpers/runtime';
import { parseExposition, sample } from '../helpers/prometheus';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const REPO_ROOT = resolve(__dirname, '..', '..');
const CLI_ENTRY = join(REPO_ROOT, 'src', 'cli', 'main.ts');
const KEY_REFRESH_SECONDS = 1;
/** Slack on top of the refresh interval for a loaded 2-core machine (a poll query, a busy loop). */
const PROPAGATION_SLACK_MS = 4000;
/** SHORT_POLICY (test/helpers/runtime.ts): prepublish 2m, activeFor 10m. */
const PREPUBLISH = 120;
const ACTIVE_FOR = 600;

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One request on a fresh connection (no keep-alive), so the cluster's round robin spreads them. */
function fresh(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<Reply>((res, rej) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () => res({ status: r.statusCode ?? 0, headers: r.headers, body }));
      r.on('error', rej);
    });
    req.on('error', rej);
    req.end(opts.body);
  });
}

const slotOf = (r: Reply) => Number(r.headers[WORKER_HEADER]);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function runCli(configPath: string, args: string[]) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((res, rej) => {
    const child = spawn(process.execPath, ['-r', 'tsx/cjs', CLI_ENTRY, '-c', configPath, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, KEYWARDEN_CLI_MAIN: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

describe('RestartBackoff', () => {
  it('doubles the delay for crashes in a row up to the ceiling, and resets after a stable run', () => {
    const b = new RestartBackoff({ initialMs: 100, maxMs: 1000, stableAfterMs: 10_000 });
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map(() => b.next(50)),
      [100, 200, 400, 800, 1000, 1000],
    );
    assert.equal(b.next(10_000), 100);
    assert.equal(b.next(5), 200);
  });
});

describe('keywarden serve --workers 2 (e2e)', function () {
  this.timeout(240_000);
  let token: SoftHsmToken;
  let configPath: string;
  let baseUrl: string;
  let secret: string;
  let primary: ChildProcess;
  let primaryExit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let logText = '';

  interface LogLine {
    msg?: string;
    slot?: number;
    workerPid?: number;
    worker?: number;
    pid?: number;
    op?: string;
    operator?: string;
  }
  const logLines = (): LogLine[] =>
    logText
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as LogLine;
        } catch {
          return {};
        }
      });

  /** Pids of workers whose "worker listening" line appeared, by slot (latest wins). */
  const listeningPids = () => {
    const out = new Map<number, number>();
    for (const l of logLines())
      if (l.msg === 'worker listening' && l.slot && l.workerPid) out.set(l.slot, l.workerPid);
    return out;
  };

  async function until<T>(
    what: string,
    fn: () => Promise<T | undefined> | T | undefined,
    ms = 90_000,
  ): Promise<T> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const v = await fn();
      if (v !== undefined) return v;
      if (primary.exitCode !== null)
        throw new Error(`primary exited while waiting for ${what}:\n${logText.slice(-4000)}`);
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}:\n${logText.slice(-4000)}`);
  }

  /** Requests on fresh connections until every slot has answered; returns one reply per slot. */
  async function fromEverySlot(
    path: string,
    opts: Parameters<typeof fresh>[1] = {},
  ): Promise<Map<number, Reply>> {
    const seen = new Map<number, Reply>();
    for (let i = 0; i < 40 && seen.size < 2; i++) {
      const r = await fresh(`${baseUrl}${path}`, opts);
      seen.set(slotOf(r), r);
    }
    return seen;
  }

  const jwksKids = (r: Reply) => (JSON.parse(r.body) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    const doc = testConfigDocument(
      token,
      [
        { name: 'demo', issuer: `${baseUrl}/scopes/demo` },
        { name: 'ed', alg: 'EdDSA', issuer: `${baseUrl}/scopes/ed` },
      ],
      {
        logLevel: 'info',
        // workerHeader: the tests tell the workers apart by it (off by default).
        server: { host: '127.0.0.1', port, keyRefreshSeconds: KEY_REFRESH_SECONDS, workerHeader: true },
      },
    );
    configPath = join(token.dir, 'keywarden.yaml');
    await writeFile(configPath, JSON.stringify(doc, null, 2), { mode: 0o600 });
    const init = await runCli(configPath, ['init']);
    assert.equal(init.code, 0, init.stderr);
    // Before the daemon starts: the direct path. Rotation and revocation below go through the
    // daemon's admin socket, which the primary (the scheduling process) serves.
    const added = await runCli(configPath, [
      '--local',
      '--json',
      'clients',
      'add',
      'workers-test',
      '--grant',
      'demo:sign',
      '--grant',
      'ed:sign',
    ]);
    assert.equal(added.code, 0, added.stderr);
    secret = (JSON.parse(added.stdout) as { secret: string }).secret;

    primary = spawn(
      process.execPath,
      ['-r', 'tsx/cjs', CLI_ENTRY, '-c', configPath, 'serve', '--workers', '2'],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, KEYWARDEN_CLI_MAIN: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    primary.stdout!.on('data', (d: Buffer) => (logText += d.toString()));
    primary.stderr!.on('data', (d: Buffer) => (logText += d.toString()));
    primaryExit = new Promise((r) => primary.once('exit', (code, signal) => r({ code, signal })));
    await until('both workers listening', () => (listeningPids().size === 2 ? true : undefined));
  });

  after(async () => {
    if (primary && primary.exitCode === null && primary.signalCode === null) {
      primary.kill('SIGKILL');
      await primaryExit;
    }
    // Workers leave with their primary (the IPC channel closes); make sure none is left over.
    for (const pid of listeningPids().values()) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await token?.cleanup();
  });

  it('serves requests from both workers, each a child of the primary with core dumps disabled', async () => {
    const replies = await fromEverySlot('/healthz', { headers: { connection: 'close' } });
    assert.deepEqual([...replies.keys()].sort(), [1, 2]);
    for (const r of replies.values()) assert.equal(r.status, 200);
    for (const pid of listeningPids().values()) {
      assert.notEqual(pid, primary.pid);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Field 4 of /proc/PID/stat (after the parenthesised command) is the parent pid.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      assert.equal(ppid, primary.pid);
      assert.match(readFileSync(`/proc/${pid}/limits`, 'utf8'), /Max core file size\s+0\s+0\s/);
    }
  });

  it('every worker signs with keys another process generated (ES256 and EdDSA), verifiable by jose', async () => {
    for (const [scope, alg] of [
      ['demo', 'ES256'],
      ['ed', 'EdDSA'],
    ] as const) {
      const jwks = createLocalJWKSet(
        JSON.parse((await fresh(`${baseUrl}/scopes/${scope}/.well-known/jwks.json`)).body) as JSONWebKeySet,
      );
      const signed = await fromEverySlot(`/v1/scopes/${scope}/sign`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ claims: { sub: 'u', aud: `${scope}-api` } }),
      });
      assert.deepEqual([...signed.keys()].sort(), [1, 2]);
      for (const r of signed.values()) {
        assert.equal(r.status, 200, `${scope}: ${r.body}`);
        const { token: jwt } = JSON.parse(r.body) as { token: string };
        const { protectedHeader } = await jwtVerify(jwt, jwks, {
          issuer: `${baseUrl}/scopes/${scope}`,
          audience: `${scope}-api`,
        });
        assert.equal(protectedHeader.alg, alg);
      }
    }
  });

  it('/metrics from any worker reports the sum over all workers', async () => {
    const signTotal = (text: string) =>
      text
        .split('\n')
        .filter((l) => l.startsWith('keywarden_sign_requests_total'))
        .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
    const before = await fromEverySlot('/metrics');
    const totals = [...before.values()].map((r) => signTotal(r.body));
    assert.equal(new Set(totals).size, 1, `workers disagree: ${totals.join(' vs ')}`);
    for (let i = 0; i < 10; i++) {
      const r = await fresh(`${baseUrl}/v1/scopes/demo/sign`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${secret}`,
          'content-type': 'application/json',
          connection: 'close',
        },
        body: JSON.stringify({ claims: { sub: 'm', aud: 'demo-api' } }),
      });
      assert.equal(r.status, 200, r.body);
    }
    const after = await fromEverySlot('/metrics');
    for (const [slot, r] of after) assert.equal(signTotal(r.body), totals[0]! + 10, `worker ${slot}`);
  });

  it("/metrics from any worker adds the primary's key lifecycle and process metrics, in one valid exposition", async () => {
    const replies = await fromEverySlot('/metrics');
    assert.deepEqual([...replies.keys()].sort(), [1, 2]);
    for (const [slot, r] of replies) {
      assert.equal(r.status, 200, r.body);
      // Strict: a family the workers' sum and the primary's part both declared would throw here.
      const e = parseExposition(r.body);
      for (const scope of ['demo', 'ed']) {
        const at = `worker ${slot}, ${scope}`;
        const age = sample(e, 'keywarden_active_key_age_seconds', scope);
        const retires = sample(e, 'keywarden_active_key_retirement_seconds', scope);
        const rotation = sample(e, 'keywarden_next_rotation_seconds', scope);
        assert.equal(sample(e, 'keywarden_scope_has_active_key', scope), 1, at);
        assert.equal(sample(e, 'keywarden_published_keys', scope), 1, at);
        assert.equal(sample(e, 'keywarden_reconcile_failures_total', scope), 0, at);
        assert.ok(age !== undefined && age >= 0 && age < ACTIVE_FOR, `${at}: age ${age}`);
        assert.ok(retires !== undefined && Math.abs(age + retires - ACTIVE_FOR) < 1e-6, `${at}: ${retires}`);
        assert.ok(
          rotation !== undefined && Math.abs(retires - rotation - PREPUBLISH) < 1e-6,
          `${at}: ${rotation}`,
        );
        const lastOk = sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', scope) ?? 0;
        assert.ok(lastOk > 0 && lastOk <= Date.now() / 1000, `${at}: last ok ${lastOk}`);
      }
      assert.ok((sample(e, 'keywarden_audit_chain_length') ?? 0) > 0, `worker ${slot}`);
      // Workers' process metrics (summed) and the primary's own, under their prefix.
      assert.ok((sample(e, 'process_cpu_user_seconds_total') ?? 0) > 0, `worker ${slot}`);
      assert.ok((sample(e, 'keywarden_primary_process_resident_memory_bytes') ?? 0) > 0, `worker ${slot}`);
      assert.ok((sample(e, 'keywarden_primary_process_start_time_seconds') ?? 0) > 0, `worker ${slot}`);
      assert.equal(e.types.get('keywarden_sign_requests_total'), 'counter', `worker ${slot}`);
    }
  });

  it("the primary's lifecycle gauges follow a rotation made by the CLI", async () => {
    const rotated = await runCli(configPath, ['keys', 'rotate', '--scope', 'ed']);
    assert.equal(rotated.code, 0, rotated.stderr);
    const done = Date.now();
    const published = await until('the primary to count the new ed key', async () => {
      const e = parseExposition((await fresh(`${baseUrl}/metrics`)).body);
      return sample(e, 'keywarden_published_keys', 'ed') === 2 ? Date.now() - done : undefined;
    });
    assert.ok(published <= KEY_REFRESH_SECONDS * 1000 + PROPAGATION_SLACK_MS, `${published} ms`);
    // The CLI went through the admin socket, which the primary serves (a worker's lines carry `worker`).
    const served = await until('the admin request in the log', () =>
      logLines().find((l) => l.msg === 'admin request' && l.op === 'keys.rotate'),
    );
    assert.equal(served.worker, undefined, 'the admin request was answered by a worker');
    assert.equal(served.pid, primary.pid);
    assert.match(served.operator ?? '', /^admin-socket:/);
  });

  it('replaces a worker killed with SIGKILL, and the replacement serves', async () => {
    const before = listeningPids();
    const victim = before.get(1)!;
    process.kill(victim, 'SIGKILL');
    const replacement = await until('slot 1 replaced', () => {
      const now = listeningPids().get(1);
      return now !== undefined && now !== victim ? now : undefined;
    });
    assert.ok(!isAlive(victim), 'the killed worker is gone');
    assert.ok(isAlive(replacement), 'the replacement runs');
    assert.equal(listeningPids().get(2), before.get(2), 'the other worker was left alone');
    assert.ok(
      logLines().some((l) => l.msg === 'worker exited; restarting it' && l.workerPid === victim),
      'the primary logged the crash',
    );
    const replies = await fromEverySlot('/scopes/demo/.well-known/jwks.json');
    assert.equal(replies.get(1)?.status, 200, 'the replacement answers');
    assert.equal(replies.get(2)?.status, 200);
  });

  it('a revocation by the CLI leaves the JWKS of every worker within the refresh bound', async () => {
    const beforeRevoke = await fromEverySlot('/scopes/demo/.well-known/jwks.json');
    assert.equal(beforeRevoke.size, 2);
    const kid = jwksKids(beforeRevoke.get(1)!)[0]!;
    for (const r of beforeRevoke.values()) assert.ok(jwksKids(r).includes(kid));

    const revoked = await runCli(configPath, ['keys', 'revoke', '--reason', 'workers e2e', '--', kid]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const revokedAt = Date.now();
    const droppedAfterMs = new Map<number, number>();
    while (droppedAfterMs.size < 2 && Date.now() - revokedAt < 30_000) {
      const r = await fresh(`${baseUrl}/scopes/demo/.well-known/jwks.json`);
      if (r.status === 200 && !jwksKids(r).includes(kid) && !droppedAfterMs.has(slotOf(r))) {
        droppedAfterMs.set(slotOf(r), Date.now() - revokedAt);
      }
      await sleep(20);
    }
    assert.deepEqual([...droppedAfterMs.keys()].sort(), [1, 2], 'both workers dropped the revoked kid');
    for (const [slot, ms] of droppedAfterMs) {
      assert.ok(
        ms <= KEY_REFRESH_SECONDS * 1000 + PROPAGATION_SLACK_MS,
        `worker ${slot} still published the revoked kid ${ms} ms after the CLI finished`,
      );
    }
    // Every worker signs with the replacement the revocation created, never with the revoked key,
    // within the same bound. A worker may have reloaded between the revocation's commit and the
    // replacement's (the CLI makes both): it then answers NO_ACTIVE_KEY until its next reload.
    const deadline = Date.now() + KEY_REFRESH_SECONDS * 1000 + PROPAGATION_SLACK_MS;
    let signed: Map<number, Reply>;
    for (;;) {
      signed = await fromEverySlot('/v1/scopes/demo/sign', {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ claims: { sub: 'u', aud: 'demo-api' } }),
      });
      for (const r of signed.values()) {
        if (r.status === 200) assert.notEqual((JSON.parse(r.body) as { kid: string }).kid, kid);
        else assert.match(r.body, /NO_ACTIVE_KEY/);
      }
      if ([...signed.values()].every((r) => r.status === 200) || Date.now() > deadline) break;
      await sleep(100);
    }
    assert.equal(signed.size, 2);
    for (const r of signed.values()) assert.equal(r.status, 200, r.body);
  });

  it('SIGTERM to the primary drains an in-flight request in a worker, then everything exits 0', async () => {
    const workers = [...listeningPids().values()];
    const body = JSON.stringify({ claims: { sub: 'in-flight', aud: 'demo-api' } });
    const half = Math.floor(body.length / 2);
    let answered: Reply | null = null;
    const inFlight = new Promise<Reply>((res, rej) => {
      const req = request(
        `${baseUrl}/v1/scopes/demo/sign`,
        {
          method: 'POST',
          agent: false,
          headers: {
            authorization: `Bearer ${secret}`,
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(body)),
          },
        },
        (r) => {
          let text = '';
          r.setEncoding('utf8');
          r.on('data', (d: string) => (text += d));
          r.on('end', () => res((answered = { status: r.statusCode ?? 0, headers: r.headers, body: text })));
        },
      );
      req.on('error', rej);
      // Half the body now: the worker has the request and waits for the rest.
      req.write(body.slice(0, half));
      void (async () => {
        await sleep(500);
        primary.kill('SIGTERM');
        await until('every worker to start draining', () =>
          logLines().filter((l) => l.msg === 'shutting down: draining requests' && l.worker !== undefined)
            .length >= 2
            ? true
            : undefined,
        );
        await sleep(300);
        assert.equal(answered, null, 'the request was still in flight when the workers began to drain');
        req.end(body.slice(half));
      })().catch(rej);
    });
    const reply = await inFlight;
    assert.equal(reply.status, 200, reply.body);
    assert.ok((JSON.parse(reply.body) as { token?: string }).token, 'a token came back');
    const exit = await primaryExit;
    assert.deepEqual(exit, { code: 0, signal: null }, logText.slice(-4000));
    for (const pid of workers) assert.ok(!isAlive(pid), `worker ${pid} exited`);
    await assert.rejects(fresh(`${baseUrl}/healthz`), 'nothing listens any more');
  });
});
