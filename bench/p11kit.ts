/**
 * 8. The HSM in another process: what signing costs when SoftHSM2 sits behind p11-kit's RPC
 * server (keywarden loads p11-kit-client.so, as in the quick start, the container and the
 * systemd units) instead of inside the signing process (libsofthsm2.so loaded directly).
 *
 * a. Raw pkcs11js ES256 C_SignAsync from one Node process (bench/raw-pkcs11.ts), 4 and 8
 *    sessions, on the same token and key: direct vs through `p11-kit server`.
 * b. keywarden's HTTP sign rate (hsm backend, `serve --workers 1`, 4 sessions, wrk in its
 *    own process): direct vs through `p11-kit server`.
 *
 * Paired rounds: each round measures both paths in fresh processes, back to back, the order
 * alternating between rounds, so a drift of the machine (±30% between rounds here) hits both
 * alike; reported per round is the ratio p11-kit ÷ direct, then the median and the range of the
 * ratios. CPU per signature is reported for the client process (the raw signer, or keywarden)
 * and for the p11-kit server's processes (the server and the p11-kit-remote child that serves
 * the connection), which a direct module does not have.
 */
import { isPkcs11Config } from '../src/backends/pkcs11/config';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startP11KitServer, type P11KitServer } from '../test/helpers/p11kit-server';
import { STEADY_POLICY, type BenchPlan } from './lib/bench-policy';
import { compiled } from './lib/build';
import { BENCH_THREADPOOL, prepareKeywarden, type KeywardenSetup } from './lib/keywarden';
import { runLoad, type LoadTarget, type RepResult } from './lib/load';
import { cpuSample, othersShare, processTreeCpuUs } from './lib/machine';
import { freePort, runChild, startServer, type Server } from './lib/processes';
import type { Report } from './lib/report';
import { median, ms, rate } from './lib/stats';
import type { RawPkcs11Config, RawPkcs11Result } from './raw-pkcs11';

const SESSIONS = 4;
const SCOPE = 'es256';
const CLIENT_SECRET_GRANT = `${SCOPE}:sign`;
const BODY = JSON.stringify({ claims: { sub: 'user-1', aud: `${SCOPE}-api`, scope: 'read' } });

type Path = 'direct' | 'p11-kit';

/**
 * A CPU sample whose "ours" also counts the reaped children of this process (utime + stime of
 * the raw signer, which has exited by the second sample): cpuSample() alone would count it as
 * another process's.
 */
function sampleWithReaped(): ReturnType<typeof cpuSample> {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields 16 and 17 of proc(5): cutime, cstime
  const reaped = Number(f[13]) + Number(f[14]);
  const s = cpuSample();
  return { ...s, ours: s.ours + reaped };
}

/** Rounds for this benchmark: at least 5, so the spread of the ratios means something. */
const roundsOf = (plan: BenchPlan) => Math.max(plan.reps, 5);

const us = (n: number | null | undefined) =>
  n === null || n === undefined || Number.isNaN(n) ? '—' : `${n.toFixed(1)} µs`;

function spread(ratios: number[]): string {
  return `median **${median(ratios).toFixed(2)}**, range ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`;
}

/** The backend settings for each path: the config's (direct) or p11-kit's client and address. */
function moduleFor(kw: KeywardenSetup, path: Path, server: P11KitServer) {
  const hsm = kw.config.backends.hsm;
  if (!isPkcs11Config(hsm)) throw new Error('bench config lacks the hsm backend');
  return path === 'direct'
    ? { module: hsm.module, moduleEnv: { ...hsm.moduleEnv } }
    : { module: server.modulePath, moduleEnv: { ...server.moduleEnv } };
}

async function rawRounds(
  report: Report,
  plan: BenchPlan,
  kw: KeywardenSetup,
  server: P11KitServer,
): Promise<void> {
  const key = await kw.signingKey(SCOPE);
  const hsm = kw.config.backends.hsm;
  if (!isPkcs11Config(hsm)) throw new Error('bench config lacks the hsm backend');
  const seconds = plan.quick ? 2 : 3;
  const rounds = roundsOf(plan);
  const rows: (string | number)[][] = [];
  const summary: string[] = [];
  for (const sessions of [4, 8]) {
    const ratios: number[] = [];
    const results: Record<Path, RawPkcs11Result[]> = { direct: [], 'p11-kit': [] };
    for (let i = 0; i < rounds; i++) {
      const order: Path[] = i % 2 === 0 ? ['direct', 'p11-kit'] : ['p11-kit', 'direct'];
      const got = {} as Record<Path, RawPkcs11Result>;
      let others = 0;
      for (const path of order) {
        const config: RawPkcs11Config = {
          ...moduleFor(kw, path, server),
          tokenLabel: hsm.tokenLabel,
          pin: kw.token.pin,
          ckaId: key.ckaId,
          sessions,
          reps: 1,
          seconds,
          warmupSeconds: 1,
          ...(path === 'p11-kit' ? { serverPid: server.pid } : {}),
        };
        const before = sampleWithReaped();
        got[path] = await runChild<RawPkcs11Result>(['bench/raw-pkcs11.ts', JSON.stringify(config)], {
          UV_THREADPOOL_SIZE: BENCH_THREADPOOL,
        });
        others = Math.max(others, othersShare(before, sampleWithReaped()));
        results[path].push(got[path]);
      }
      const ratio = got['p11-kit'].rate / got.direct.rate;
      ratios.push(ratio);
      process.stderr.write(
        `  raw ${sessions} sessions round ${i + 1}/${rounds}: direct ${rate(got.direct.rate)}, p11-kit ${rate(got['p11-kit'].rate)}, ratio ${ratio.toFixed(2)}\n`,
      );
      rows.push([
        sessions,
        i + 1,
        order.join(' → '),
        rate(got.direct.rate),
        rate(got['p11-kit'].rate),
        ratio.toFixed(2),
        `${us(got.direct.loopMicros)} / ${us(got['p11-kit'].loopMicros)}`,
        us(got.direct.cpuMicros),
        us(got['p11-kit'].cpuMicros),
        us(got['p11-kit'].serverMicros),
        `${(others * 100).toFixed(0)}%`,
      ]);
    }
    summary.push(
      `${sessions} sessions: p11-kit ÷ direct ${spread(ratios)} over ${rounds} rounds; median rates ` +
        `${rate(median(results.direct.map((r) => r.rate)))} direct, ${rate(median(results['p11-kit'].map((r) => r.rate)))} p11-kit; ` +
        `client CPU per signature ${us(median(results.direct.map((r) => r.cpuMicros)))} direct, ` +
        `${us(median(results['p11-kit'].map((r) => r.cpuMicros)))} p11-kit, plus ` +
        `${us(median(results['p11-kit'].map((r) => r.serverMicros ?? Number.NaN)))} in the p11-kit server's processes; ` +
        `event-loop time per signature ${us(median(results.direct.map((r) => r.loopMicros)))} direct, ` +
        `${us(median(results['p11-kit'].map((r) => r.loopMicros)))} p11-kit.`,
    );
  }
  report.note(
    `**a. Raw pkcs11js, ES256 \`C_SignInit\` + \`C_SignAsync\`, one Node process** (bench/raw-pkcs11.ts; ` +
      `16 signatures in flight; a fresh process per measurement, 1 s warm-up + ${seconds} s; ` +
      `UV_THREADPOOL_SIZE=${BENCH_THREADPOOL}). Event loop: the main thread's busy time per signature ` +
      '(`C_SignInit` runs there, synchronously; through p11-kit it is a socket round trip). ' +
      `CPU: the signing process's (all threads) and, for p11-kit, ` +
      'the server plus the p11-kit-remote that serves the connection, per signature. "others max": the ' +
      "share of the machine's CPU that processes outside the benchmark used during the round.",
  );
  report.table(
    [
      'sessions',
      'round',
      'order',
      'direct',
      'p11-kit',
      'p11-kit ÷ direct',
      'event loop direct / p11-kit',
      'client CPU direct',
      'client CPU p11-kit',
      'p11-kit server CPU',
      'others max',
    ],
    rows,
  );
  for (const s of summary) report.note(s);
}

/** keywarden `serve --workers 1` on a config whose hsm backend uses `path`. */
async function serveVia(kw: KeywardenSetup, path: Path, server: P11KitServer): Promise<Server> {
  if (path === 'direct') return kw.serve(1);
  const doc = JSON.parse(await readFile(kw.configPath, 'utf8')) as {
    server: { port: number };
    backends: { hsm: Record<string, unknown> };
  };
  const port = await freePort();
  doc.server.port = port;
  doc.backends.hsm = { ...doc.backends.hsm, ...moduleFor(kw, path, server) };
  const configPath = join(kw.token.dir, 'keywarden-p11kit.yaml');
  await writeFile(configPath, JSON.stringify(doc), { mode: 0o600 });
  return startServer({
    name: 'keywarden via p11-kit',
    args: [compiled('src/cli/main.ts'), '-c', configPath, '--log-level', 'info', 'serve', '--workers', '1'],
    env: { KEYWARDEN_CLI_MAIN: '1', UV_THREADPOOL_SIZE: BENCH_THREADPOOL },
    baseUrl: `http://127.0.0.1:${port}`,
    timeoutMs: 600_000,
    ready: (out) => out.includes('"msg":"keywarden serving"'),
  });
}

async function httpRounds(
  report: Report,
  plan: BenchPlan,
  kw: KeywardenSetup,
  server: P11KitServer,
): Promise<void> {
  const secret = await kw.addClient('bench', [CLIENT_SECRET_GRANT]);
  const rounds = roundsOf(plan);
  const rows: (string | number)[][] = [];
  const ratios: number[] = [];
  const all: Record<Path, (RepResult & { hsmUs: number })[]> = { direct: [], 'p11-kit': [] };
  for (let i = 0; i < rounds; i++) {
    const order: Path[] = i % 2 === 0 ? ['direct', 'p11-kit'] : ['p11-kit', 'direct'];
    const got = {} as Record<Path, RepResult & { hsmUs: number }>;
    for (const path of order) {
      const s = await serveVia(kw, path, server);
      try {
        const target: LoadTarget = {
          name: `keywarden ${path}`,
          url: `${s.baseUrl}/v1/scopes/${SCOPE}/sign`,
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
          body: BODY,
          pid: s.pid,
        };
        const probe = await fetch(target.url, { method: 'POST', headers: target.headers, body: BODY });
        if (probe.status !== 200) throw new Error(`${target.name}: ${probe.status} ${await probe.text()}`);
        await runLoad(target, plan.connections, plan.warmupSeconds);
        const hsm0 = path === 'p11-kit' ? processTreeCpuUs(server.pid) : Number.NaN;
        const r = await runLoad(target, plan.connections, plan.seconds);
        const responses = Math.max(1, r.rps * plan.seconds);
        const hsmUs = path === 'p11-kit' ? (processTreeCpuUs(server.pid) - hsm0) / responses : Number.NaN;
        if (r.non2xx + r.errors > 0)
          throw new Error(`${target.name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
        got[path] = { ...r, hsmUs };
        all[path].push(got[path]);
      } finally {
        await s.stop();
      }
    }
    const ratio = got['p11-kit'].rps / got.direct.rps;
    ratios.push(ratio);
    process.stderr.write(
      `  http round ${i + 1}/${rounds}: direct ${rate(got.direct.rps)}, p11-kit ${rate(got['p11-kit'].rps)}, ratio ${ratio.toFixed(2)}\n`,
    );
    rows.push([
      i + 1,
      order.join(' → '),
      rate(got.direct.rps),
      rate(got['p11-kit'].rps),
      ratio.toFixed(2),
      `${ms(got.direct.p99)} / ${ms(got['p11-kit'].p99)}`,
      us(got.direct.serverUs),
      us(got['p11-kit'].serverUs),
      us(got['p11-kit'].hsmUs),
      `${(Math.max(got.direct.others, got['p11-kit'].others) * 100).toFixed(0)}%`,
    ]);
  }
  report.note(
    `**b. keywarden HTTP sign, ES256, \`serve --workers 1\`, ${SESSIONS} sessions** (POST /v1/scopes/${SCOPE}/sign, ` +
      `wrk -t1 -c${plan.connections} in its own process; a fresh keywarden per measurement, ` +
      `${plan.warmupSeconds} s warm-up + ${plan.seconds} s). CPU per token: keywarden's process, and the p11-kit server's processes.`,
  );
  report.table(
    [
      'round',
      'order',
      'direct',
      'p11-kit',
      'p11-kit ÷ direct',
      'p99 direct / p11-kit',
      'keywarden CPU direct',
      'keywarden CPU p11-kit',
      'p11-kit server CPU',
      'others max',
    ],
    rows,
  );
  report.note(
    `HTTP: p11-kit ÷ direct ${spread(ratios)} over ${rounds} rounds; median rates ${rate(median(all.direct.map((r) => r.rps)))} direct, ` +
      `${rate(median(all['p11-kit'].map((r) => r.rps)))} p11-kit; keywarden CPU per token ${us(median(all.direct.map((r) => r.serverUs)))} direct, ` +
      `${us(median(all['p11-kit'].map((r) => r.serverUs)))} p11-kit, plus ${us(median(all['p11-kit'].map((r) => r.hsmUs)))} in the p11-kit server's processes.`,
  );
}

export async function benchP11Kit(report: Report, plan: BenchPlan): Promise<void> {
  report.section('8. The HSM in another process: SoftHSM2 direct vs behind p11-kit server');
  const kw = await prepareKeywarden({
    scopes: [{ name: SCOPE, alg: 'ES256', policy: STEADY_POLICY }],
    sessions: SESSIONS,
  });
  let server: P11KitServer | null = null;
  try {
    server = await startP11KitServer(kw.token);
    await rawRounds(report, plan, kw, server);
    await httpRounds(report, plan, kw, server);
  } finally {
    await server?.stop();
    await kw.cleanup();
  }
}
