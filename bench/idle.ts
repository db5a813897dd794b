/**
 * 7. Idle cost: what a daemon with nothing to do costs the host, for one process and for
 * `--workers 2`: CPU time per second of the whole process tree, and how often its event loops
 * wake (voluntary context switches of each process's main thread). The yardstick is the bare
 * fastify server of the JWKS benchmark, idle too, with the same number of processes. Nothing
 * sends requests; keywarden's own timers run as deployed (key and client polls every
 * server.keyRefreshSeconds = 2 s, the scheduler, the audit activity flushes, the metrics
 * collectors).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { STEADY_POLICY, type BenchPlan } from './lib/bench-policy';
import { prepareKeywarden } from './lib/keywarden';
import { mainThreadWakeups, processTreeCpuUs } from './lib/machine';
import { freePort, startYardstick, type Server } from './lib/processes';
import type { Report } from './lib/report';

interface Idle {
  cpuMsPerSecond: number;
  wakeupsPerSecond: number;
}

/** Lets `server` settle, then measures its tree for `seconds`. */
async function measureIdle(server: Server, settleSeconds: number, seconds: number): Promise<Idle> {
  await sleep(settleSeconds * 1000);
  const cpu0 = processTreeCpuUs(server.pid);
  const wake0 = mainThreadWakeups(server.pid);
  await sleep(seconds * 1000);
  return {
    cpuMsPerSecond: (processTreeCpuUs(server.pid) - cpu0) / 1000 / seconds,
    wakeupsPerSecond: (mainThreadWakeups(server.pid) - wake0) / seconds,
  };
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
      // Both idle at once: each measurement window sees the same machine.
      const [mine, theirs] = await Promise.all([
        measureIdle(k, settle, seconds),
        measureIdle(bare, settle, seconds),
      ]);
      for (const [name, r] of [
        [`keywarden serve --workers ${workers}`, mine],
        [`bare fastify x${workers}`, theirs],
      ] as const) {
        rows.push([
          name,
          r.cpuMsPerSecond.toFixed(2),
          `${(r.cpuMsPerSecond / 10).toFixed(2)}%`,
          r.wakeupsPerSecond.toFixed(1),
        ]);
      }
    } finally {
      for (const s of servers) await s.stop();
      await kw.cleanup();
    }
  }
  report.table(
    ['idle server', 'CPU ms per s (process tree)', 'of one core', 'main-thread wakeups per s'],
    rows,
  );
  report.note(
    `Measured over ${seconds} s after ${settle} s of settling; CPU from /proc in 10 ms ticks, so ` +
      `values under ~${(10 / seconds).toFixed(2)} ms/s are at the resolution limit.`,
  );
}
