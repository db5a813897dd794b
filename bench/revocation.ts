/**
 * 10. Revocation push: how long after `keywarden keys revoke` until every relying party refuses
 * the key's tokens. `serve --workers 2`; 100 relying parties subscribed to the scope's key-events
 * stream (one verifier and one connection each, spread over 4 processes), and beside them, as the
 * yardstick, 20 relying parties that only poll the JWKS as its Cache-Control says (jwksMaxAge 10 s
 * here). Each round signs a token, waits until every relying party accepts it, revokes its key with
 * the real CLI, and records when each relying party first refuses it (each checks every 20 ms).
 * Latency is counted from the key's `revokedAt` (the instant the CLI stamps on it, just before its
 * transaction commits) and, separately, from the CLI's exit. Target: p99 within 2 s.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { BenchPlan } from './lib/bench-policy';
import { compiled } from './lib/build';
import { prepareKeywarden } from './lib/keywarden';
import { uptimeLine } from './lib/machine';
import { REPO_ROOT } from './lib/processes';
import type { Report } from './lib/report';
import { ms, percentile } from './lib/stats';

const PROCESSES = 4;
const SUBSCRIBED_PER_PROCESS = 25;
const POLLING_PER_PROCESS = 5;
const POLICY = {
  jwksMaxAge: '10s',
  prepublish: '20s',
  activeFor: '10m',
  verifyGrace: '2m',
  maxTokenTtl: '2m',
  destroyAfter: '10m',
  maxKeyLifetime: '30m',
};

interface RpResult {
  subscribed: boolean;
  refusedAt: number | null;
  reason: string | null;
}

class RpProcess {
  private readonly waiters: ((m: { type: string; [k: string]: unknown }) => void)[] = [];
  constructor(readonly child: ChildProcess) {
    child.on('message', (m: { type: string }) => this.waiters.shift()?.(m));
  }
  next(): Promise<{ type: string; [k: string]: unknown }> {
    return new Promise((r) => this.waiters.push(r));
  }
  send(m: unknown): void {
    this.child.send(m as never);
  }
}

export async function benchRevocation(report: Report, plan: BenchPlan): Promise<void> {
  report.section('10. Revocation push (issue #19)');
  const rounds = plan.quick ? 3 : 8;
  const kw = await prepareKeywarden({
    scopes: [{ name: 'rev', policy: POLICY }],
    sessions: 2,
    keyRefreshSeconds: 2,
    server: { keyEvents: { maxConnectionsPerAddress: 1000 } },
  });
  const rps: RpProcess[] = [];
  try {
    const server = await kw.serve(2);
    const issuer = `${kw.baseUrl}/scopes/rev`;
    for (let i = 0; i < PROCESSES; i++) {
      const child = fork(compiled('bench/revocation-rp.ts'), [], {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          RP_ISSUER: issuer,
          RP_AUDIENCE: 'rev-api',
          RPS: String(SUBSCRIBED_PER_PROCESS + POLLING_PER_PROCESS),
          SUBSCRIBED: String(SUBSCRIBED_PER_PROCESS),
        },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      const rp = new RpProcess(child);
      rps.push(rp);
      const m = await rp.next();
      if (m.type !== 'started') throw new Error(`relying-party process: ${JSON.stringify(m)}`);
    }
    const fromRevokedAt: number[] = [];
    const fromExit: number[] = [];
    const pollingFromRevokedAt: number[] = [];
    let missed = 0;
    let pollingMissed = 0;
    for (let round = 0; round < rounds; round++) {
      const signed = await kw.cli([
        'sign',
        '--scope',
        'rev',
        '--claims',
        JSON.stringify({ sub: `round-${round}`, aud: 'rev-api' }),
        '--json',
      ]);
      if (signed.code !== 0) throw new Error(`sign failed: ${signed.stderr}`);
      const { token, kid } = JSON.parse(signed.stdout) as { token: string; kid: string };
      const ready = rps.map((rp) => rp.next());
      for (const rp of rps) rp.send({ type: 'watch', token, timeoutMs: 30_000 });
      for (const m of await Promise.all(ready))
        if (m.type !== 'ready') throw new Error(`relying party not ready: ${JSON.stringify(m)}`);
      const done = rps.map((rp) => rp.next());
      const revoked = await kw.cli([
        'keys',
        'revoke',
        '--reason',
        'bench: revocation push',
        '--json',
        '--',
        kid,
      ]);
      const exitAt = Date.now();
      for (const rp of rps) rp.send({ type: 'revoked' });
      if (revoked.code !== 0) throw new Error(`revoke failed: ${revoked.stderr}`);
      const revokedAt = new Date(
        (JSON.parse(revoked.stdout) as { revoked: { revokedAt: string } }).revoked.revokedAt,
      ).getTime();
      for (const m of await Promise.all(done)) {
        if (m.type !== 'refused') throw new Error(`relying party failed: ${JSON.stringify(m)}`);
        for (const r of m.results as RpResult[]) {
          if (r.refusedAt === null) {
            if (r.subscribed) missed++;
            else pollingMissed++;
            continue;
          }
          if (r.subscribed) {
            fromRevokedAt.push(r.refusedAt - revokedAt);
            fromExit.push(r.refusedAt - exitAt);
          } else pollingFromRevokedAt.push(r.refusedAt - revokedAt);
        }
      }
      process.stderr.write(`revocation round ${round + 1}/${rounds} done\n`);
    }
    const row = (name: string, v: number[], miss: number) => [
      name,
      v.length,
      ms(percentile(v, 50)),
      ms(percentile(v, 99)),
      ms(Math.max(...v)),
      miss,
    ];
    report.table(
      ['relying parties (latency from revokedAt)', 'refusals', 'p50', 'p99', 'max', 'never refused (30 s)'],
      [
        row(`subscribed (${PROCESSES * SUBSCRIBED_PER_PROCESS}, key-events stream)`, fromRevokedAt, missed),
        row(
          `polling only (${PROCESSES * POLLING_PER_PROCESS}, Cache-Control, jwksMaxAge 10 s)`,
          pollingFromRevokedAt,
          pollingMissed,
        ),
      ],
    );
    report.note(
      `Subscribed, counted from the CLI's exit instead: p50 ${ms(percentile(fromExit, 50))}, p99 ${ms(percentile(fromExit, 99))}. ` +
        `${rounds} rounds, serve --workers 2, ${PROCESSES} relying-party processes. Load: ${uptimeLine()}`,
    );
    await server.stop();
  } finally {
    for (const rp of rps) {
      rp.send({ type: 'stop' });
      if (rp.child.exitCode === null) setTimeout(() => rp.child.kill('SIGKILL'), 2000).unref();
    }
    await kw.cleanup();
  }
}
