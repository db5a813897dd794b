import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';

/** The machine, for the record: CPU model and count, memory, kernel, Node. */
export function machineDescription(): string {
  const c = cpus();
  return `${c.length} x ${c[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`;
}

/** `uptime`'s line (load averages), for the record. */
export function uptimeLine(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load average: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(', ')}`;
  }
}

interface CpuTicks {
  busy: number;
  total: number;
  ours: number;
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

/** Every live process's parent and CPU ticks (utime+stime), read from /proc. */
function processTable(): { parent: Map<number, number>; ticks: Map<number, number> } {
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // rest[1] = ppid, rest[11] = utime, rest[12] = stime (fields 4, 14, 15 of proc(5))
      parent.set(Number(name), Number(rest[1]));
      ticks.set(Number(name), Number(rest[11]) + Number(rest[12]));
    } catch {
      // The process ended while we looked.
    }
  }
  return { parent, ticks };
}

/** Whether `pid` is `root` or one of its descendants, by the parent links of `parent`. */
function inTree(parent: ReadonlyMap<number, number>, pid: number, root: number): boolean {
  for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; hops++) {
    if (p === root) return true;
    p = parent.get(p);
  }
  return false;
}

/**
 * CPU ticks of `root` and every live descendant (children included once reaped, as the kernel
 * counts them), or NaN when `root` is gone.
 */
function treeTicks(root: number): number {
  const { parent, ticks } = processTable();
  if (!ticks.has(root)) return Number.NaN;
  let sum = 0;
  for (const [pid, t] of ticks) if (inTree(parent, pid, root)) sum += t;
  return sum;
}

/** The live processes in `root`'s tree (itself included). */
function treePids(root: number): number[] {
  const { parent } = processTable();
  return [...parent.keys()].filter((pid) => inTree(parent, pid, root));
}

/**
 * Voluntary context switches so far of the main thread of `root` and of each live descendant:
 * how often those event loops went to sleep and were woken. Threads other than the main one
 * (V8's, libuv's pool) are not counted.
 */
export function mainThreadWakeups(root: number): number {
  let sum = 0;
  for (const pid of treePids(root)) {
    try {
      const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) sum += Number(m[1]);
    } catch {
      // The process ended while we looked.
    }
  }
  return sum;
}

/** A CPU sample to difference later with `othersShare`. */
export function cpuSample(): CpuTicks {
  return { ...machineTicks(), ours: treeTicks(process.pid) };
}

/**
 * The share of the machine's CPU (0..1, all cores) that processes outside this benchmark used
 * between two samples: other engineers' tests disturbing the measurement. A process of ours that
 * exited in between is counted as ours only through `exitedChildrenUs` (the load generator's).
 */
export function othersShare(a: CpuTicks, b: CpuTicks, exitedChildrenUs = 0): number {
  const total = b.total - a.total;
  if (total <= 0) return 0;
  // /proc/stat counts in the same 10 ms ticks as /proc/<pid>/stat (USER_HZ = 100) per core.
  const exited = Number.isFinite(exitedChildrenUs) ? exitedChildrenUs / 10_000 : 0;
  const others = b.busy - a.busy - Math.max(0, b.ours - a.ours) - exited;
  return Math.max(0, Math.min(1, others / total));
}

/** Resident set size of a process in MiB (VmRSS), or NaN. */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU time in µs (utime+stime) used so far by `pid` and every live descendant (cluster
 * workers), or NaN if `pid` is gone. Clock ticks are 10 ms; over a multi-second run of tens of
 * thousands of requests that is well under a µs per request.
 */
export function processTreeCpuUs(pid: number): number {
  return treeTicks(pid) * 10_000;
}

/**
 * Waits until the process tree of `pid` is quiet: under `threshold` of one core over each of two
 * consecutive seconds (or `timeoutMs` passes; returns how long it waited). A daemon with 100,000
 * scopes goes on working for a while after it serves (its start-up orphan scan, its first key
 * poll), which a load measured right after would count as request latency.
 */
export async function waitUntilQuiet(pid: number, threshold = 0.05, timeoutMs = 180_000): Promise<number> {
  const start = Date.now();
  let quietSeconds = 0;
  let before = processTreeCpuUs(pid);
  while (quietSeconds < 2 && Date.now() - start < timeoutMs) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = processTreeCpuUs(pid);
    quietSeconds = now - before < threshold * 1_000_000 ? quietSeconds + 1 : 0;
    before = now;
  }
  return Date.now() - start;
}
