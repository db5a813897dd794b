/**
 * 4. Scale: reconcile pass time and daemon memory with 10, 1,000 and 10,000 scopes, with
 * nothing due and with one rotation (a new key) due in every scope; JWKS latency with many
 * scopes. The passes run in a process of their own on the real store (as the scheduler runs
 * them: every scope at once), with a FakeClock to make rotations due.
 *
 * Key generation: on SoftHSM2 for 10 and 1,000 scopes. SoftHSM's file object store makes each
 * key generation slower the more objects the token holds (keywarden's backend looks the CKA_ID
 * up before generating, and C_FindObjects walks every object file), so 10,000 first keys plus
 * 10,000 rotations would take hours; the 1,000 and 10,000 rows are therefore also run with a
 * zero-cost key generator (MemoryBackend (test/helpers/fakes.ts)) that isolates keywarden's own cost,
 * and the SoftHSM lookup cost is measured on its own (softhsm-find.ts) to show where time goes.
 */
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { openBackend } from '../src/backends/registry';
import { reconcileAll, reconcileScope, type ReconcileReport } from '../src/lifecycle/reconcile-scope';
import { openRuntime, storeAuditLog, type Runtime } from '../src/main';
import { FakeClock } from '../src/policy/clock';
import { loadConfig } from '../src/config/load-config';
import { ReconcileQueue } from '../src/scheduler/reconcile-queue';
import { Scheduler } from '../src/scheduler/scheduler';
import { createHttpServer } from '../src/daemon';
import { STEADY_POLICY, type BenchPlan } from './lib/bench-policy';
import { prepareKeywarden, type KeywardenSetup } from './lib/keywarden';
import { runLoad } from './lib/load';
import { rssMiB } from './lib/machine';
import { runChild } from './lib/processes';
import type { Report } from './lib/report';
import { MemoryBackend } from '../test/helpers/fakes';
import { median, ms, pairedRatio, rate } from './lib/stats';

/** ES256: SoftHSM generates P-256 keys fast, and it is the default algorithm. */
const ALG = 'ES256';
const tenantId = (i: number) => String(i).padStart(6, '0');
/** The benchmark's scopes come from one scope template (namePattern `s{tenant}`), as an operator's would. */
const scopeName = (i: number) => `s${tenantId(i)}`;

/**
 * softhsm: real key generation. zero-cost: MemoryBackend (test/helpers/fakes.ts). zero-cost-no-reload:
 * zero-cost, and the key cache's full reload after each scope that changed is suppressed during
 * the passes that create keys (BENCHMARK ONLY: with it, 10,000 creations take over an hour, see
 * docs/benchmarks.md); the cost of one reload is measured on its own instead.
 */
export type Keygen = 'softhsm' | 'zero-cost' | 'zero-cost-no-reload';

interface Timed {
  ms: number;
  created: number;
  errors: number;
}

/**
 * A runtime on the benchmark's store. zero-cost: every runtime of one size shares one MemoryBackend,
 * so keys made by one are found (and pass the integrity checks) in the next, as on a real token.
 */
function runtimeFor(
  kw: KeywardenSetup,
  clock: FakeClock,
  keygen: Keygen,
  memory: MemoryBackend,
): Promise<Runtime> {
  return openRuntime(kw.config, {
    clock,
    log: pino({ level: 'silent' }),
    audit: storeAuditLog(),
    ...(keygen === 'softhsm' ? { openBackend } : { openBackend: async () => memory }),
  });
}

/**
 * The zero-cost backend shared by every runtime of one size: a runtime's close() leaves it open, as
 * closing one process's session leaves a token's keys where they are.
 */
class SharedMemoryBackend extends MemoryBackend {
  override async close(): Promise<void> {}
}

/** A daemon's serving process, in this process (zero-cost: its keys live in this process's MemoryBackend). */
interface InProcessDaemon {
  baseUrl: string;
  stop(): Promise<unknown>;
}

/**
 * What `serve --workers 1` does before it answers, in this process: open the runtime, load the key
 * set, the scheduler's start-up pass (bounded, as configured) and its timers, HTTP listening (the
 * fastify routes; the daemon's node:http JWKS fast path is not in front, so JWKS answers here are
 * if anything slower than the daemon's). A `serve` child cannot be used for zero-cost rows: it
 * would open the SoftHSM2 token, find none of the MemoryBackend's keys, and replace every one.
 */
async function startInProcess(
  kw: KeywardenSetup,
  clock: FakeClock,
  keygen: Keygen,
  memory: MemoryBackend,
): Promise<{ daemon: InProcessDaemon; rt: Runtime }> {
  const rt = await runtimeFor(kw, clock, keygen, memory);
  await rt.ctx.cache.refresh(true);
  const scheduler = new Scheduler(rt.keywarden, {}, { jobs: [] });
  await scheduler.start();
  const app = createHttpServer(rt.keywarden, { publicBaseUrl: kw.baseUrl });
  await app.listen({ host: '127.0.0.1', port: kw.port });
  return {
    rt,
    daemon: {
      baseUrl: kw.baseUrl,
      async stop() {
        await app.close();
        await scheduler.stop();
      },
    },
  };
}

function firstError(reports: ReconcileReport[]): void {
  const failed = reports.filter((r) => r.errors.length > 0);
  if (failed.length > 0) {
    const e = failed[0]!.errors[0]!;
    process.stderr.write(
      `  ${failed.length} scopes failed, e.g. ${failed[0]!.scope}: ${e.action} ${e.code}: ${e.message}\n`,
    );
  }
}

function summary(reports: ReconcileReport[], t0: number): Timed {
  firstError(reports);
  return {
    ms: performance.now() - t0,
    created: reports.reduce((n, r) => n + r.done.filter((d) => d.action === 'create').length, 0),
    errors: reports.reduce((n, r) => n + r.errors.length, 0),
  };
}

/**
 * Every scope queued at once, run at most `scheduler.concurrency` (default 8) at a time, as
 * Scheduler.start() and a shared cron tick run them (src/scheduler/reconcile-queue.ts).
 */
async function concurrentPass(rt: Runtime): Promise<Timed> {
  const t = performance.now();
  const reports: ReconcileReport[] = [];
  const queue = new ReconcileQueue(rt.ctx.config.scheduler.concurrency, async (scope) => {
    reports.push(await reconcileScope(rt.ctx, scope, 'bench'));
  });
  await Promise.all(rt.ctx.config.scopes.map((s) => queue.enqueue(s.name, 'due')));
  return summary(reports, t);
}

/** One scope after another, as `keywarden init` runs them. */
async function sequentialPass(rt: Runtime): Promise<Timed> {
  const t = performance.now();
  return summary(await reconcileAll(rt.ctx, 'bench'), t);
}

/** Runs `fn` with the runtime's key-cache reloads turned into no-ops (zero-cost-no-reload only). */
async function maybeWithoutReload<T>(rt: Runtime, keygen: Keygen, fn: () => Promise<T>): Promise<T> {
  if (keygen !== 'zero-cost-no-reload') return fn();
  const cache = rt.ctx.cache;
  const original = cache.refresh;
  cache.refresh = async () => undefined;
  try {
    return await fn();
  } finally {
    cache.refresh = original;
  }
}

/** One forced full reload of the key cache (every row, each backend's inventory, every view). */
async function reloadMs(rt: Runtime): Promise<number> {
  const t = performance.now();
  await rt.ctx.cache.refresh(true);
  return performance.now() - t;
}

/**
 * The key-cache reload after one revocation, paired by round with a forced full reload as the
 * yardstick (measured just before it, in the same process): each round revokes the signing key of
 * a different scope by a store write, as another daemon's `keys revoke` reaches this process, and
 * times the reload that follows (what the poll or the PostgreSQL notification runs).
 */
async function revocationReloads(
  rt: Runtime,
  n: number,
  rounds: number,
): Promise<{ incremental: number[]; full: number[] }> {
  const incremental: number[] = [];
  const full: number[] = [];
  for (let i = 0; i < rounds; i++) {
    full.push(await reloadMs(rt));
    const scope = scopeName(Math.floor(((i + 0.5) * n) / rounds));
    const key = rt.ctx.cache.view(scope)?.records.find((k) => k.revokedAt === null);
    if (!key) throw new Error(`no key to revoke in ${scope}`);
    if (!(await rt.ctx.keys.revoke(key.id, rt.ctx.clock.now(), 'bench: one revocation'))) {
      throw new Error(`${key.id} was already revoked`);
    }
    const t = performance.now();
    await rt.ctx.cache.refresh();
    incremental.push(performance.now() - t);
    if (rt.ctx.cache.view(scope)?.records.find((k) => k.id === key.id)?.revokedAt == null) {
      throw new Error(`the reload did not see the revocation in ${scope}`);
    }
  }
  return { incremental, full };
}

const revocationText = (r: { incremental: number[]; full: number[] }) =>
  `${ms(median(r.incremental))} (${ms(Math.min(...r.incremental))}–${ms(Math.max(...r.incremental))}); ` +
  `÷ full ${pairedRatio(r.incremental, r.full)}`;
const passText = (p: Timed) =>
  Number.isNaN(p.ms) ? 'not run' : `${ms(p.ms)}${p.errors ? ` (${p.errors} failed)` : ''}`;
const perKey = (p: Timed) => (p.created > 0 ? `, ${ms(p.ms / p.created)}/key` : '');

/** One size's measurements (run in a process of its own: a process loads one SoftHSM2 token). */
export interface SizeResult {
  row: (string | number)[];
  jwksRow: (string | number)[];
}

export async function measureSize(n: number, keygen: Keygen, plan: BenchPlan): Promise<SizeResult> {
  const kw = await prepareKeywarden({
    scopes: [],
    scopeTemplates: (baseUrl) => [
      {
        name: 'tenants',
        namePattern: 's{tenant}',
        issuer: `${baseUrl}/scopes/s{tenant}`,
        audiences: ['{tenant}-api'],
        alg: ALG,
        backend: 'hsm',
        production: false,
        policy: STEADY_POLICY,
        tenants: Array.from({ length: n }, (_, i) => tenantId(i)),
      },
    ],
    sessions: 4,
    init: false,
  });
  // Config load as `serve` does it (read, parse, validate, expand the template), in this process.
  const loadStart = performance.now();
  const loaded = loadConfig(kw.configPath);
  const configLoadMs = performance.now() - loadStart;
  if (loaded.scopes.length !== n) throw new Error(`the template expanded to ${loaded.scopes.length} scopes`);
  const clock = new FakeClock(Date.now());
  const memory = new SharedMemoryBackend('hsm');
  let rt: Runtime | null = await runtimeFor(kw, clock, keygen, memory);
  const log = (s: string) => process.stderr.write(`  ${n} scopes (${keygen}): ${s}\n`);
  try {
    log('first keys...');
    // 10,000 scopes at once on SQLite: every reconcile takes its scope's lease at once and renews it
    // every 10 s while it waits its turn, and the renewals swamp the store (a first pass ran for
    // 20 minutes without finishing); the passes that create keys then run one scope at a time.
    const creating = keygen === 'zero-cost-no-reload' ? sequentialPass : concurrentPass;
    const how = keygen === 'zero-cost-no-reload' ? ' (sequential)' : '';
    const first = await maybeWithoutReload(rt, keygen, () => creating(rt!));
    // Keys the first pass could not make are retried, as the next cron tick would.
    const retry = first.errors > 0 ? await maybeWithoutReload(rt, keygen, () => creating(rt!)) : null;
    log(`first keys ${passText(first)}; nothing due...`);
    if (process.env.KEYWARDEN_BENCH_SCALE_RELOAD_ONLY === '1') {
      // Only the key-set reloads (on a busy machine 100,000 scopes' passes and start-up take an hour):
      // a fresh runtime loads the keys as a starting daemon does, then the reloads are timed.
      await rt.close();
      rt = await runtimeFor(kw, clock, keygen, memory);
      const full = await reloadMs(rt);
      const revocation = await revocationReloads(rt, n, 5);
      log(
        `full reload ${ms(full)}; reload after one revocation ${revocation.incremental.map(ms).join(', ')}; ` +
          `full ${revocation.full.map(ms).join(', ')}`,
      );
      const notRun = 'not run';
      return {
        row: [
          n,
          'zero-cost, reloads suppressed, reloads only',
          notRun,
          notRun,
          notRun,
          notRun,
          ms(full),
          revocationText(revocation),
          `${passText(first)}${how}: ${first.created} keys${perKey(first)}`,
          ms(configLoadMs),
          notRun,
          notRun,
        ],
        jwksRow: [n, 0, notRun, notRun, notRun, notRun, notRun],
      };
    }
    const idleConcurrent = await concurrentPass(rt);
    log(`nothing due, bounded pass ${passText(idleConcurrent)}`);
    // Left out with the rotation pass (KEYWARDEN_BENCH_SCALE_SKIP_ROTATION=1): at 100,000 scopes each pass takes minutes.
    const idleSequential =
      process.env.KEYWARDEN_BENCH_SCALE_SKIP_ROTATION === '1'
        ? { ms: Number.NaN, created: 0, errors: 0 }
        : await sequentialPass(rt);
    await rt.close();
    rt = null;

    // The daemon itself: start-up including its own pass, memory, JWKS. SoftHSM2 rows run `serve`;
    // zero-cost rows its steps in this process (startInProcess says why).
    log('daemon...');
    const t = performance.now();
    let inProcess: Runtime | null = null;
    let daemon: InProcessDaemon & { pid?: number };
    if (keygen === 'softhsm') {
      daemon = await kw.serve(1);
    } else {
      const started = await startInProcess(kw, clock, keygen, memory);
      daemon = started.daemon;
      inProcess = started.rt;
    }
    const startupMs = performance.now() - t;
    const rssOf = () => (daemon.pid !== undefined ? rssMiB(daemon.pid) : process.memoryUsage().rss / 2 ** 20);
    const rssStart = rssOf();
    log(`daemon started in ${ms(startupMs)}, RSS ${rssStart.toFixed(0)} MiB; JWKS load...`);
    const count = Math.min(n, 1000);
    const paths = Array.from({ length: count }, (_, i) => ({
      method: 'GET',
      path: `/scopes/${scopeName(Math.floor((i * n) / count))}/.well-known/jwks.json`,
    }));
    const load = await runLoad(
      { name: `jwks ${n}`, url: daemon.baseUrl, requests: paths },
      plan.connections,
      plan.quick ? 3 : 5,
    );
    const rssAfterLoad = rssOf();
    await daemon.stop();
    await inProcess?.close();
    log(`JWKS p99 ${ms(load.p99)}; one rotation due per scope...`);

    // One rotation due in every scope: the successor is due `prepublish` before the current key retires.
    // KEYWARDEN_BENCH_SCALE_SKIP_ROTATION=1 leaves it out (at 100,000 scopes it is as long as the first keys).
    rt = await runtimeFor(kw, clock, keygen, memory);
    const skipRotation = process.env.KEYWARDEN_BENCH_SCALE_SKIP_ROTATION === '1';
    const skipped: Timed = { ms: Number.NaN, created: 0, errors: 0 };
    if (!skipRotation) clock.advanceSeconds(24 * 3600 - 10 * 60 + 1);
    const rotation = skipRotation ? skipped : await maybeWithoutReload(rt, keygen, () => creating(rt!));
    const reload = await reloadMs(rt);
    log(`one key-set reload ${ms(reload)}`);
    const after = skipRotation ? skipped : await concurrentPass(rt);
    log('reload after one revocation, 5 rounds paired with a full reload...');
    const revocation = await revocationReloads(rt, n, 5);
    log(
      `reload after one revocation ${revocation.incremental.map(ms).join(', ')}; ` +
        `full ${revocation.full.map(ms).join(', ')}`,
    );
    return {
      row: [
        n,
        keygen === 'softhsm'
          ? 'SoftHSM2'
          : keygen === 'zero-cost'
            ? 'zero-cost'
            : 'zero-cost, reloads suppressed',
        passText(idleConcurrent),
        passText(idleSequential),
        `${passText(rotation)}${how}: ${rotation.created} keys${perKey(rotation)}`,
        `${passText(after)}${after.created ? `: ${after.created} keys` : ''}`,
        ms(reload),
        revocationText(revocation),
        `${passText(first)}${how}: ${first.created} keys${perKey(first)}${retry ? `; retry ${passText(retry)}: ${retry.created}` : ''}`,
        ms(configLoadMs),
        ms(startupMs),
        `${rssStart.toFixed(0)} / ${rssAfterLoad.toFixed(0)} MiB`,
      ],
      jwksRow: [
        n,
        count,
        rate(load.rps),
        ms(load.p50),
        ms(load.p99),
        load.non2xx + load.errors,
        `${(load.others * 100).toFixed(0)}%`,
      ],
    };
  } finally {
    await rt?.close();
    await kw.cleanup();
  }
}

export async function benchScale(report: Report, plan: BenchPlan): Promise<void> {
  report.section('4. Scale');
  const runs: [number, Keygen][] = plan.quick
    ? [
        [10, 'softhsm'],
        [1000, 'zero-cost'],
      ]
    : [
        [10, 'softhsm'],
        [1000, 'softhsm'],
        [1000, 'zero-cost'],
        [10_000, 'zero-cost-no-reload'],
        // 100,000 scopes take about 25 minutes more on 2 cores: asked for by name.
        ...(process.env.KEYWARDEN_BENCH_SCALE_100K === '1'
          ? [[100_000, 'zero-cost-no-reload'] as [number, Keygen]]
          : []),
      ];
  const rows: (string | number)[][] = [];
  const jwksRows: (string | number)[][] = [];
  for (const [n, keygen] of runs) {
    const r = await runChild<SizeResult>(['bench/scale-size.ts', String(n), keygen, JSON.stringify(plan)]);
    rows.push(r.row);
    if (keygen !== 'softhsm' || n === 10) jwksRows.push(r.jwksRow);
    process.stderr.write(`  => ${JSON.stringify(r.row)}\n`);
  }
  report.note(
    `${ALG} keys, SQLite store, hash-chained audit log on, policy activeFor 1d / prepublish 10m. "Concurrent" is how ` +
      'the daemon runs a pass (Scheduler.start and a shared cron tick queue every scope, scheduler.concurrency = 8 ' +
      'run at once); "sequential" is ' +
      "`keywarden init`'s reconcileAll. zero-cost = MemoryBackend (test/helpers/fakes.ts: keys made in Node's memory, " +
      "no HSM): keywarden's own cost without the HSM; 'reloads suppressed' also turns off the key-cache reload that " +
      'reconcile runs after each scope it changed, during the passes that create keys (see the reload columns). ' +
      'The scopes come from one scope template (tenants inline); config load = read, parse, validate and expand ' +
      'it, in the benchmark process. Daemon: `serve --workers 1` (start-up = process start, config load, store, ' +
      'first key-set load, the start-up reconcile pass, one cron job per distinct schedule, HTTP listening) for ' +
      'SoftHSM2 rows; for zero-cost rows the same steps in the benchmark process (a `serve` child would not find ' +
      "the MemoryBackend's keys and would replace them all on SoftHSM2), JWKS through the fastify route without " +
      "the daemon's node:http fast path, RSS of the benchmark process. RSS after start-up / after the JWKS load.",
  );
  report.table(
    [
      'scopes',
      'keygen',
      'pass, nothing due (concurrent)',
      'pass, nothing due (sequential)',
      'pass, one rotation due per scope',
      'next pass',
      'one key-cache reload (full)',
      'reload after one revocation: median (range); ÷ full reload, per round',
      'first keys',
      'config load',
      'daemon start-up',
      'daemon RSS',
    ],
    rows,
  );
  report.note('JWKS with many scopes (one daemon process, requests cycling over up to 1,000 of its scopes):');
  report.table(['scopes', 'scopes requested', 'responses/s', 'p50', 'p99', 'failed', 'others'], jwksRows);
  if (!plan.quick) {
    const find = await runChild<{ rows: (string | number)[][] }>(['bench/softhsm-find.ts']);
    report.note(
      'SoftHSM2 (file object store) alone, pkcs11js in one process: what one C_FindObjects by CKA_ID costs as the ' +
        'token fills up (keywarden does one per key generation, on the event loop), and C_GenerateKeyPair per key:',
    );
    report.table(
      ['keys on the token', 'objects', 'C_FindObjects by CKA_ID', 'C_GenerateKeyPair (P-256)'],
      find.rows,
    );
  }
}
