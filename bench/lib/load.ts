import { cpuSample, othersShare, processTreeCpuUs } from './machine';
import { median, ms, rate } from './stats';
import { runWrk, type WrkRequest } from './wrk';

/** One HTTP endpoint under load: what the load generator (wrk, its own process) sends to it. */
export interface LoadTarget {
  name: string;
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Several requests to cycle through (e.g. many JWKS paths); overrides method/body. */
  requests?: { method?: string; path: string; headers?: Record<string, string>; body?: string }[];
  /** The server's pid: its CPU time (workers included) per response is then reported. */
  pid?: number;
}

/** How long and how hard. */
export interface LoadPlan {
  connections: number;
  warmupSeconds: number;
  reps: number;
  seconds: number;
}

export interface RepResult {
  /** 2xx responses per second. */
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  /** Share of the machine's CPU used by processes outside the benchmark during this rep. */
  others: number;
  /** CPU µs the server (all its processes) spent per 2xx response; NaN without `pid`. */
  serverUs: number;
  /** CPU µs the load generator (wrk, a process of its own) spent per 2xx response. */
  loadUs: number;
}

export interface Measured {
  name: string;
  reps: RepResult[];
  rps: number;
  p50: number;
  p99: number;
  /** Medians of the per-response CPU costs (see RepResult). */
  serverUs: number;
  loadUs: number;
  /** Highest "others" share of any rep. */
  othersMax: number;
  /** Any non-2xx answer or socket error in any rep (a broken run, not a slow one). */
  failures: number;
}

/** The requests wrk cycles through for a target. */
function wrkRequests(t: LoadTarget): { origin: string; requests: WrkRequest[] } {
  const url = new URL(t.url);
  if (t.requests) {
    return {
      origin: url.origin,
      requests: t.requests.map((r) => ({
        method: r.method ?? 'GET',
        path: r.path,
        headers: r.headers ?? {},
        ...(r.body !== undefined ? { body: r.body } : {}),
      })),
    };
  }
  return {
    origin: url.origin,
    requests: [
      {
        method: t.method ?? 'GET',
        path: `${url.pathname}${url.search}`,
        headers: t.headers ?? {},
        ...(t.body !== undefined ? { body: t.body } : {}),
      },
    ],
  };
}

/** One wrk run (its own process, one thread). */
export async function runLoad(t: LoadTarget, connections: number, seconds: number): Promise<RepResult> {
  const { origin, requests } = wrkRequests(t);
  const before = cpuSample();
  const serverBefore = t.pid === undefined ? Number.NaN : processTreeCpuUs(t.pid);
  const r = await runWrk(origin, requests, connections, seconds);
  const serverUs = t.pid === undefined ? Number.NaN : processTreeCpuUs(t.pid) - serverBefore;
  const after = cpuSample();
  const ok = Math.max(0, r.requests - r.badStatus);
  const responses = Math.max(1, ok);
  return {
    rps: ok / r.durationSeconds,
    p50: r.p50Ms,
    p99: r.p99Ms,
    non2xx: r.badStatus,
    errors: r.socketErrors,
    // wrk has exited and been reaped by now, so its ticks no longer show as ours: take them out.
    others: othersShare(before, after, r.cpuUs),
    serverUs: serverUs / responses,
    loadUs: r.cpuUs / responses,
  };
}

/**
 * Measures every target with the same load generator and plan: a warm-up run each, then
 * `reps` rounds in which every target gets one run, interleaved (A B C A B C ...) so a change
 * in the machine's load (other engineers' tests) hits every target alike. Medians per target.
 */
export async function measureInterleaved(
  targets: LoadTarget[],
  plan: LoadPlan,
  progress: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<Measured[]> {
  for (const t of targets) {
    if (plan.warmupSeconds > 0) await runLoad(t, plan.connections, plan.warmupSeconds);
  }
  const reps = new Map<string, RepResult[]>(targets.map((t) => [t.name, []]));
  for (let i = 0; i < plan.reps; i++) {
    for (const t of targets) {
      const r = await runLoad(t, plan.connections, plan.seconds);
      reps.get(t.name)!.push(r);
      progress(
        `  ${t.name} rep ${i + 1}/${plan.reps}: ${rate(r.rps)} p50 ${ms(r.p50)} p99 ${ms(r.p99)}` +
          `${r.non2xx + r.errors > 0 ? ` FAILURES ${r.non2xx} non-2xx ${r.errors} errors` : ''}` +
          `${Number.isNaN(r.serverUs) ? '' : ` server ${r.serverUs.toFixed(1)} µs/resp`} load generator ${r.loadUs.toFixed(1)} µs/resp` +
          ` (others used ${(r.others * 100).toFixed(0)}% of the machine)`,
      );
    }
  }
  return targets.map((t) => summarise(t.name, reps.get(t.name)!));
}

/** Medians over a target's repetitions. */
function summarise(name: string, rs: RepResult[]): Measured {
  return {
    name,
    reps: rs,
    rps: median(rs.map((r) => r.rps)),
    p50: median(rs.map((r) => r.p50)),
    p99: median(rs.map((r) => r.p99)),
    serverUs: median(rs.map((r) => r.serverUs)),
    loadUs: median(rs.map((r) => r.loadUs)),
    othersMax: Math.max(...rs.map((r) => r.others)),
    failures: rs.reduce((n, r) => n + r.non2xx + r.errors, 0),
  };
}

/** Servers started for one round of measureFreshProcesses, and how to stop them. */
export interface Round {
  targets: LoadTarget[];
  stop(): Promise<void>;
}

/**
 * Like measureInterleaved, but each of `plan.reps` rounds starts every server afresh (`start`),
 * warms each up, measures each once (interleaved) and stops them. Two processes running the same
 * code can differ by 10–20% for their whole life on this virtual machine (placement, heap layout,
 * JIT decisions): one long-lived process per target would make that one draw the result. Medians
 * over rounds sample it instead. Targets are matched across rounds by name and returned in
 * the order `start` gave them in the first round.
 */
export async function measureFreshProcesses(
  start: (round: number) => Promise<Round>,
  plan: LoadPlan,
  progress: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<Measured[]> {
  const all = new Map<string, RepResult[]>();
  for (let i = 0; i < plan.reps; i++) {
    const round = await start(i);
    try {
      progress(`  round ${i + 1}/${plan.reps} (fresh processes)`);
      // A different target goes first each round, so none always runs right after the start-up.
      const k = i % round.targets.length;
      const order = [...round.targets.slice(k), ...round.targets.slice(0, k)];
      const m = await measureInterleaved(order, { ...plan, reps: 1 }, progress);
      for (const x of m) all.set(x.name, [...(all.get(x.name) ?? []), ...x.reps]);
    } finally {
      await round.stop();
    }
  }
  return [...all].map(([name, rs]) => summarise(name, rs));
}
