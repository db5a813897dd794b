/**
 * 4. Scale: reconcile pass time and daemon memory with 10, 1,000 and 10,000 scopes, with
 * nothing due and with one rotation (a new key) due in every scope; JWKS latency with many
 * scopes. The passes run in a process of their own on the real store, with a FakeClock to make
 * rotations due. The nothing-due pass is measured as the scheduler's heartbeat runs it (in-memory
 * checks, full reconciles only where something is due), paired per round with every scope's full
 * reconcile through the bounded queue as the yardstick.
 *
 * Key generation: on SoftHSM2 for 10 and 1,000 scopes. SoftHSM's file object store makes each
 * key generation slower the more objects the token holds (keywarden's backend looks the CKA_ID
 * up before generating, and C_FindObjects walks every object file), so 10,000 first keys plus
 * 10,000 rotations would take hours; the 1,000 and 10,000 rows are therefore also run with a
 * zero-cost key generator (MemoryBackend (test/helpers/fakes.ts)) that isolates keywarden's own cost,
 * and the SoftHSM lookup cost is measured on its own (softhsm-find.ts) to show where time goes.
 */
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { rm, writeFile } from 'node:fs/promises';
import pino from 'pino';
import { openBackend } from '../src/backends/registry';
import { reconcileAll, reconcileScope, type ReconcileReport } from '../src/lifecycle/reconcile-scope';
import { openRuntime, storeAuditLog, type Runtime } from '../src/main';
import { FakeClock } from '../src/policy/clock';
import { loadConfig } from '../src/config/load-config';
import { ReconcileQueue } from '../src/scheduler/reconcile-queue';
import { Scheduler } from '../src/scheduler/scheduler';
import { STEADY_POLICY, type BenchPlan } from './lib/bench-policy';
import { prepareKeywarden, type KeywardenSetup } from './lib/keywarden';
import { runLoad } from './lib/load';
import { rssMiB, waitUntilQuiet } from './lib/machine';
import { compiled } from './lib/build';
import { runChild } from './lib/processes';
import type { Report } from './lib/report';
import { MemoryBackend } from '../test/helpers/fakes';
import { median, ms, pairedRatio, rate } from './lib/stats';
import { loopText, measureSpans, spanLines, timeMethod, type SpanReport } from './lib/time-spans';

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
  /** Event-loop delay and time spans while the pass ran (key-creating passes only). */
  spans?: SpanReport;
}

/**
 * A runtime on the benchmark's store. zero-cost: every runtime of one size shares one MemoryBackend,
 * so keys made by one are found (and pass the integrity checks) in the next, as on a real token.
 */
async function runtimeFor(
  kw: KeywardenSetup,
  clock: FakeClock,
  keygen: Keygen,
  memory: MemoryBackend,
): Promise<Runtime> {
  const rt = await openRuntime(kw.config, {
    clock,
    log: pino({ level: 'silent' }),
    audit: storeAuditLog(),
    ...(keygen === 'softhsm' ? { openBackend } : { openBackend: async () => memory }),
  });
  // Spans for measureSpans (recorded only while one runs).
  timeMethod(rt.ctx.cache, 'refresh', 'key-cache reload');
  timeMethod(rt.ctx.store, 'transaction', 'store transaction (incl. queueing)');
  return rt;
}

/** A key-creating pass with the event-loop delay monitor and the time spans on (logged). */
async function withSpans(log: (s: string) => void, what: string, pass: () => Promise<Timed>): Promise<Timed> {
  const { value, report } = await measureSpans(pass);
  log(`${what}: event loop ${loopText(report)}`);
  for (const line of spanLines(report)) log(`  ${line}`);
  return { ...value, spans: report };
}

const loopCell = (p: Timed) => (p.spans ? loopText(p.spans) : 'not run');

/**
 * The zero-cost backend shared by every runtime of one size: a runtime's close() leaves it open, as
 * closing one process's session leaves a token's keys where they are.
 */
class SharedMemoryBackend extends MemoryBackend {
  override async close(): Promise<void> {}
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

/** Heartbeat passes with nothing due, each paired with the yardstick measured in the same round. */
interface HeartbeatRounds {
  heartbeatMs: number[];
  /** This process's CPU time (user + system) per heartbeat: less dependent on how busy the machine is. */
  heartbeatCpuMs: number[];
  /** Every scope's full reconcile (what each cron tick cost before the in-memory check). */
  fullMs: number[];
  fullCpuMs: number[];
  /** The fewest scopes one heartbeat skipped, of `checked`. */
  skipped: number;
  checked: number;
  fullErrors: number;
}

/**
 * A cron tick with nothing due as the scheduler runs it (Scheduler.pass: one key reload if the
 * store changed, the in-memory check per scope, the full reconcile only for scopes with something
 * due), paired per round with every scope's full reconcile (the bounded queue), in alternating
 * order. The machine is shared: only the per-round ratio means something across runs.
 */
async function heartbeatRounds(rt: Runtime, rounds: number): Promise<HeartbeatRounds> {
  const names = rt.ctx.config.scopes.map((s) => s.name);
  const scheduler = new Scheduler(rt.keywarden, {}, { jobs: [] });
  const out: HeartbeatRounds = {
    heartbeatMs: [],
    heartbeatCpuMs: [],
    fullMs: [],
    fullCpuMs: [],
    skipped: names.length,
    checked: 0,
    fullErrors: 0,
  };
  const cpuMs = (since: NodeJS.CpuUsage) => {
    const d = process.cpuUsage(since);
    return (d.user + d.system) / 1000;
  };
  const heartbeat = async () => {
    const t = performance.now();
    const cpu = process.cpuUsage();
    const counts = await scheduler.pass(names, 'heartbeat');
    out.heartbeatMs.push(performance.now() - t);
    out.heartbeatCpuMs.push(cpuMs(cpu));
    out.skipped = Math.min(out.skipped, counts.skipped);
    out.checked = counts.checked;
  };
  const full = async () => {
    const cpu = process.cpuUsage();
    const p = await concurrentPass(rt);
    out.fullCpuMs.push(cpuMs(cpu));
    out.fullMs.push(p.ms);
    out.fullErrors += p.errors;
  };
  try {
    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) {
        await heartbeat();
        await full();
      } else {
        await full();
        await heartbeat();
      }
    }
  } finally {
    await scheduler.stop();
  }
  return out;
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

/**
 * Asks the daemon (started with --heapsnapshot-signal=SIGUSR2) for a heap snapshot, and waits for
 * it: V8 writes it on the daemon's event loop, so the daemon answers a request again once it is done.
 */
async function heapSnapshot(pid: number, url: string, log: (s: string) => void): Promise<void> {
  process.kill(pid, 'SIGUSR2');
  const res = await fetch(url, { signal: AbortSignal.timeout(600_000) });
  await res.arrayBuffer();
  log(`heap snapshot written (the daemon answered ${res.status} after it)`);
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
  let keep = false;
  // The key objects made here, for a `serve` child's preload (bench/lib/memory-backend-preload.ts).
  const keysFile = join(kw.token.dir, 'memory-backend-keys.json');
  const log = (s: string) => process.stderr.write(`  ${n} scopes (${keygen}): ${s}\n`);
  try {
    log('first keys...');
    // 10,000 scopes at once on SQLite: every reconcile takes its scope's lease at once and renews it
    // every 10 s while it waits its turn, and the renewals swamp the store (a first pass ran for
    // 20 minutes without finishing); the passes that create keys then run one scope at a time.
    const creating = keygen === 'zero-cost-no-reload' ? sequentialPass : concurrentPass;
    const how = keygen === 'zero-cost-no-reload' ? ' (sequential)' : '';
    const first = await withSpans(log, 'first keys', () =>
      maybeWithoutReload(rt!, keygen, () => creating(rt!)),
    );
    // Keys the first pass could not make are retried, as the next cron tick would.
    const retry = first.errors > 0 ? await maybeWithoutReload(rt, keygen, () => creating(rt!)) : null;
    if (process.env.KEYWARDEN_BENCH_SCALE_PREPARE_ONLY === '1') {
      // Only the first keys, left in place so `serve` can be started on them again and again
      // (at 100,000 scopes making the keys costs minutes before every start; docs/benchmarks.md §4).
      await rt.close();
      rt = null;
      await writeFile(keysFile, memory.exportObjects(), { mode: 0o600 });
      keep = true;
      log(`kept: config ${kw.configPath}, keys ${keysFile}`);
      return { row: [n, `kept in ${kw.token.dir}`], jwksRow: [n, 0] };
    }
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
          notRun,
          notRun,
          ms(full),
          revocationText(revocation),
          `${passText(first)}${how}: ${first.created} keys${perKey(first)}`,
          `first keys: ${loopCell(first)}`,
          ms(configLoadMs),
          notRun,
          notRun,
        ],
        jwksRow: [n, 0, notRun, notRun, notRun, notRun, notRun],
      };
    }
    // The creating passes may have left the key cache unloaded (reloads suppressed): load it once
    // here, as the daemon has at start-up (the reload's own cost is the reload column).
    await rt.ctx.cache.refresh();
    log(`first keys ${passText(first)}; nothing due, heartbeat and full passes...`);
    const idle = await heartbeatRounds(rt, Math.max(plan.reps, 1));
    const list = (xs: number[]) => xs.map((x) => ms(x)).join(', ');
    const idleText = `${ms(median(idle.heartbeatMs))} (${list(idle.heartbeatMs)}), CPU ${list(idle.heartbeatCpuMs)}; skipped ${idle.skipped}/${idle.checked}`;
    const fullText = `${ms(median(idle.fullMs))} (${list(idle.fullMs)}), CPU ${list(idle.fullCpuMs)}${idle.fullErrors ? ` (${idle.fullErrors} failed)` : ''}`;
    const idleRatio = `${pairedRatio(idle.heartbeatMs, idle.fullMs)}; CPU ${pairedRatio(idle.heartbeatCpuMs, idle.fullCpuMs)}`;
    log(`nothing due: heartbeat ${idleText}; full ${fullText}; ratio ${idleRatio}`);
    // Left out with the rotation pass (KEYWARDEN_BENCH_SCALE_SKIP_ROTATION=1): at 100,000 scopes each pass takes minutes.
    const idleSequential =
      process.env.KEYWARDEN_BENCH_SCALE_SKIP_ROTATION === '1'
        ? { ms: Number.NaN, created: 0, errors: 0 }
        : await sequentialPass(rt);
    await rt.close();
    rt = null;

    // The daemon itself, as deployed: `keywarden serve` in its own process. Zero-cost rows preload
    // bench/lib/memory-backend-preload.ts, which serves the key objects made above from memory.
    log('daemon...');
    // KEYWARDEN_BENCH_SCALE_MEMORY=DIR: the daemon's memoryUsage() every 2 s into DIR, and with
    // KEYWARDEN_BENCH_SCALE_HEAP_SNAPSHOT=1 a heap snapshot once it started (to see what a scope costs).
    const heapDir = process.env.KEYWARDEN_BENCH_SCALE_MEMORY;
    const snapshot = heapDir !== undefined && process.env.KEYWARDEN_BENCH_SCALE_HEAP_SNAPSHOT === '1';
    const nodeArgs = snapshot ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${heapDir}`] : [];
    let env: Record<string, string> = {};
    if (keygen !== 'softhsm') {
      await writeFile(keysFile, memory.exportObjects(), { mode: 0o600 });
      env = {
        KEYWARDEN_BENCH_MEMORY_KEYS: keysFile,
        ...(heapDir ? { KEYWARDEN_BENCH_MEMORY_USAGE: join(heapDir, `memory-usage-${n}.jsonl`) } : {}),
      };
      nodeArgs.push('--require', compiled('bench/lib/memory-backend-preload.ts'));
    }
    // KEYWARDEN_BENCH_SCALE_CPU_PROF=DIR: a CPU profile of the daemon (written when it stops).
    const profDir = process.env.KEYWARDEN_BENCH_SCALE_CPU_PROF;
    if (profDir) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${profDir}`);
    const t = performance.now();
    const daemon = await kw.serve(1, env, nodeArgs);
    const startupMs = performance.now() - t;
    const rssOf = () => rssMiB(daemon.pid as number);
    const rssStart = rssOf();
    if (snapshot) await heapSnapshot(daemon.pid as number, `${daemon.baseUrl}/healthz`, log);
    log(`daemon started in ${ms(startupMs)}, RSS ${rssStart.toFixed(0)} MiB; JWKS load...`);
    const count = Math.min(n, 1000);
    const paths = Array.from({ length: count }, (_, i) => ({
      method: 'GET',
      path: `/scopes/${scopeName(Math.floor((i * n) / count))}/.well-known/jwks.json`,
    }));
    const target = { name: `jwks ${n}`, url: daemon.baseUrl, requests: paths, pid: daemon.pid };
    // Work a daemon starts right after it serves (its start-up orphan scan, periodic jobs, its
    // first key poll) is not what the JWKS rows measure: wait until it is quiet (at 100,000 scopes
    // that takes longer than a warm-up), then warm up as every other benchmark does.
    const quietAfterMs = await waitUntilQuiet(daemon.pid as number);
    log(`daemon quiet ${ms(quietAfterMs)} after it served`);
    if (plan.warmupSeconds > 0) await runLoad(target, plan.connections, plan.warmupSeconds);
    const load = await runLoad(target, plan.connections, plan.quick ? 3 : 5);
    const rssAfterLoad = rssOf();
    await daemon.stop();
    await rm(keysFile, { force: true });
    // wrk reports no latencies when nothing was answered in the run (a daemon stalled throughout).
    const latency = (v: number) => (load.rps > 0 ? ms(v) : 'no response');
    log(`JWKS p99 ${latency(load.p99)}; one rotation due per scope...`);

    // One rotation due in every scope: the successor is due `prepublish` before the current key retires.
    // KEYWARDEN_BENCH_SCALE_SKIP_ROTATION=1 leaves it out (at 100,000 scopes it is as long as the first keys).
    rt = await runtimeFor(kw, clock, keygen, memory);
    const skipRotation = process.env.KEYWARDEN_BENCH_SCALE_SKIP_ROTATION === '1';
    const skipped: Timed = { ms: Number.NaN, created: 0, errors: 0 };
    if (!skipRotation) clock.advanceSeconds(24 * 3600 - 10 * 60 + 1);
    const rotation = skipRotation
      ? skipped
      : await withSpans(log, 'one rotation per scope', () =>
          maybeWithoutReload(rt!, keygen, () => creating(rt!)),
        );
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
        idleText,
        fullText,
        idleRatio,
        passText(idleSequential),
        `${passText(rotation)}${how}: ${rotation.created} keys${perKey(rotation)}`,
        `${passText(after)}${after.created ? `: ${after.created} keys` : ''}`,
        ms(reload),
        revocationText(revocation),
        `${passText(first)}${how}: ${first.created} keys${perKey(first)}${retry ? `; retry ${passText(retry)}: ${retry.created}` : ''}`,
        `first keys: ${loopCell(first)}; rotation: ${loopCell(rotation)}`,
        ms(configLoadMs),
        ms(startupMs),
        `${rssStart.toFixed(0)} / ${rssAfterLoad.toFixed(0)} MiB`,
      ],
      jwksRow: [
        n,
        count,
        rate(load.rps),
        latency(load.p50),
        latency(load.p99),
        load.non2xx + load.errors,
        `${(load.others * 100).toFixed(0)}%`,
      ],
    };
  } finally {
    await rt?.close();
    if (!keep) await kw.cleanup();
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
    `${ALG} keys, SQLite store, hash-chained audit log on, policy activeFor 1d / prepublish 10m. "Heartbeat" is how ` +
      'the daemon runs a cron tick (Scheduler.pass: one key reload if the store changed, an in-memory check per scope, ' +
      'the full reconcile under the scope lock only for scopes with something due); "in full" queues every ' +
      "scope's full reconcile (scheduler.concurrency = 8 at once), what each tick cost before; the two alternate " +
      'in each round and the ratio is taken per round (the machine is shared); "sequential" is ' +
      "`keywarden init`'s reconcileAll. zero-cost = MemoryBackend (test/helpers/fakes.ts: keys made in Node's memory, " +
      "no HSM): keywarden's own cost without the HSM; 'reloads suppressed' also turns off the key-cache reload that " +
      'reconcile runs after each scope it changed, during the passes that create keys (see the reload columns). ' +
      'The scopes come from one scope template (tenants inline); config load = read, parse, validate and expand ' +
      'it, in the benchmark process. Daemon: `serve --workers 1` (start-up = process start, config load, store, ' +
      'first key-set load, the integrity check, the start-up reconcile pass, one cron job per distinct schedule, ' +
      'the front server listening) in a process of its own; for zero-cost rows it preloads ' +
      'bench/lib/memory-backend-preload.ts, which serves the key objects the benchmark made from memory in place of ' +
      "the token (the daemon's RSS then includes their private keys' PEM text, which an HSM would hold). JWKS " +
      "through the daemon's own front server. RSS of the daemon process after start-up / after the JWKS load. " +
      'Event-loop delay: perf_hooks.monitorEventLoopDelay (1 ms resolution) over the key-creating passes, in the ' +
      "process running them; the run's log lists where those passes spent their time (bench/lib/time-spans.ts).",
  );
  report.table(
    [
      'scopes',
      'keygen',
      'heartbeat pass, nothing due: median (rounds), CPU per round; skipped',
      'every scope reconciled in full (yardstick, bounded queue)',
      'heartbeat ÷ full, per-round median (range): wall; CPU',
      'pass, nothing due (sequential, full)',
      'pass, one rotation due per scope',
      'next pass',
      'one key-cache reload (full)',
      'reload after one revocation: median (range); ÷ full reload, per round',
      'first keys',
      'event-loop delay while creating keys',
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
