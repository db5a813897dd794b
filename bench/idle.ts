/**
 * 7. Idle cost: what a daemon with nothing to do costs the host, for one process and for
 * `--workers 2`: CPU time per second of the whole process tree, and how often its event loops
 * wake (voluntary context switches of each process's main thread). The yardstick is the bare
 * fastify server of the JWKS benchmark, idle too, with the same number of processes. Nothing
 * sends requests; keywarden's own timers run as deployed (key and client polls every
 * server.keyRefreshSeconds = 2 s, the scheduler, the audit activity flushes, the metrics
 * collectors). `--reps N` windows per server (median and range).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { STEADY_POLICY, type BenchPlan } from './lib/bench-policy';
import { prepareKeywarden } from './lib/keywarden';
import { mainThreadWakeups, processTreeCpuUs } from './lib/machine';
import { freePort, startYardstick, type Server } from './lib/processes';
import type { Report } from './lib/report';
import { median } from './lib/stats';

interface Idle {
  cpuMsPerSecond: number;
  wakeupsPerSecond: number;
}

/** Measures `server`'s tree over one window of `seconds`. */
async function measureIdle(server: Server, seconds: number): Promise<Idle> {
  const cpu0 = processTreeCpuUs(server.pid);
  const wake0 = mainThreadWakeups(server.pid);
  await sleep(seconds * 1000);
  return {
    cpuMsPerSecond: (processTreeCpuUs(server.pid) - cpu0) / 1000 / seconds,
    wakeupsPerSecond: (mainThreadWakeups(server.pid) - wake0) / seconds,
  };
}

/** The per-window values of `windows`: median, and the range as text. */
function summarise(windows: Idle[], pick: (w: Idle) => number, digits: number): string {
  const values = windows.map(pick);
  const range =
    values.length > 1
      ? ` (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`
      : '';
  return `${median(values).toFixed(digits)}${range}`;
}

export async function benchIdle(report: Report, plan: BenchPlan): Promise<void> {
  report.section('7. Idle cost');
  const settle = plan.quick ? 5 : 10;
  const seconds = plan.quick ? 10 : 30;
  const rows: (string | number)[][] = [];
  for (const workers of [1, 2]) {
    const kw = await prepareKeywarden({ scopes: [{ name: 'idle', policy: STEADY_POLICY }], sessions: 4 });
    const servers: Server[] = [];
    try {
      const k = await kw.serve(workers);
      servers.push(k);
      const bare = await startYardstick('constant', 'constant-jwks', {
        port: await freePort(),
        workers,
        body: '{"keys":[]}',
      });
      servers.push(bare);
      // Both idle at once, so each window sees the same machine; several windows on the same
      // processes, because V8's background work (its memory reducer runs a full GC some
      // seconds after start and again later) makes any one window's CPU time swing widely.
      await sleep(settle * 1000);
      const mine: Idle[] = [];
      const theirs: Idle[] = [];
      for (let w = 0; w < plan.reps; w++) {
        const [a, b] = await Promise.all([measureIdle(k, seconds), measureIdle(bare, seconds)]);
        mine.push(a);
        theirs.push(b);
      }
      for (const [name, windows] of [
        [`keywarden serve --workers ${workers}`, mine],
        [`bare fastify x${workers}`, theirs],
      ] as const) {
        rows.push([
          name,
          summarise(windows, (w) => w.cpuMsPerSecond, 2),
          `${(median(windows.map((w) => w.cpuMsPerSecond)) / 10).toFixed(2)}%`,
          summarise(windows, (w) => w.wakeupsPerSecond, 1),
        ]);
      }
    } finally {
      for (const s of servers) await s.stop();
      await kw.cleanup();
    }
  }
  report.table(
    [
      'idle server',
      'CPU ms per s (process tree), median (range)',
      'of one core (median)',
      'main-thread wakeups per s, median (range)',
    ],
    rows,
  );
  report.note(
    `${plan.reps} windows of ${seconds} s each, after ${settle} s of settling; CPU from /proc in 10 ms ticks, so ` +
      `values under ~${(10 / seconds).toFixed(2)} ms/s are at the resolution limit.`,
  );
}
