/**
 * Where a key-creating pass spends its time, without a profiler's overhead: the event loop's delay
 * (how long it was blocked), every synchronous PKCS#11 call (they block the loop: pkcs11js has no
 * asynchronous C_FindObjects), the asynchronous ones (generation, signing: on libuv's pool), the
 * waits for the host-wide object lock and the key-cache reloads. BENCHMARK ONLY: it patches
 * prototypes of this process's classes while a measurement runs.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Cryptoki } from '../../src/backends/pkcs11/cryptoki';
import { ObjectStoreLock } from '../../src/backends/pkcs11/object-store-lock';
import { ms } from './stats';

/** Count, total and longest single duration of one kind of span. */
export interface SpanTotals {
  count: number;
  totalMs: number;
  maxMs: number;
}

/** What one measured stretch of work spent, by span name, and the event loop's delay over it. */
export interface SpanReport {
  wallMs: number;
  /** Longest and 99th-percentile event-loop delay (ms), from perf_hooks.monitorEventLoopDelay. */
  loopMaxMs: number;
  loopP99Ms: number;
  spans: Record<string, SpanTotals>;
}

type Recorder = (name: string, durationMs: number) => void;
let record: Recorder | null = null;
let patched = false;

function note(name: string, startedAt: number): void {
  record?.(name, performance.now() - startedAt);
}

/** Wraps the prototypes once; spans are only kept while a `measureSpans` runs. */
function patch(): void {
  if (patched) return;
  patched = true;
  const ck = Cryptoki.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  // Every synchronous PKCS#11 call goes through Cryptoki's private `call(fn, f)`.
  const call = ck.call!;
  ck.call = function (this: unknown, fn: unknown, f: unknown) {
    const t = performance.now();
    try {
      return call.call(this, fn, f);
    } finally {
      note(`sync ${String(fn)}`, t);
    }
  };
  for (const name of ['generateKeyPair', 'sign'] as const) {
    const original = ck[name]!;
    ck[name] = async function (this: unknown, ...args: unknown[]) {
      const t = performance.now();
      try {
        return await original.apply(this, args);
      } finally {
        note(`async ${name} (incl. queueing)`, t);
      }
    };
  }
  const lock = ObjectStoreLock.prototype as unknown as {
    around: <T>(task: () => Promise<T>) => Promise<T>;
  };
  const around = lock.around;
  lock.around = function <T>(this: ObjectStoreLock, task: () => Promise<T>): Promise<T> {
    const t = performance.now();
    return around.call<ObjectStoreLock, [() => Promise<T>], Promise<T>>(this, async () => {
      note('object lock: wait', t);
      const held = performance.now();
      try {
        return await task();
      } finally {
        note('object lock: held', held);
      }
    });
  };
}

/** Times calls of `obj[method]` (an async method) as span `name` while a measurement runs. */
export function timeMethod<K extends string>(
  obj: { [k in K]: (...args: never[]) => Promise<unknown> },
  method: K,
  name: string,
): void {
  const original = obj[method] as unknown as (...args: unknown[]) => Promise<unknown>;
  (obj as unknown as Record<string, unknown>)[method] = async function (this: unknown, ...args: unknown[]) {
    const t = performance.now();
    try {
      return await original.apply(this, args);
    } finally {
      note(name, t);
    }
  };
}

/** Runs `fn` with the spans and an event-loop delay monitor on; returns its value and the report. */
export async function measureSpans<T>(fn: () => Promise<T>): Promise<{ value: T; report: SpanReport }> {
  patch();
  const spans: Record<string, SpanTotals> = {};
  record = (name, d) => {
    const s = (spans[name] ??= { count: 0, totalMs: 0, maxMs: 0 });
    s.count += 1;
    s.totalMs += d;
    s.maxMs = Math.max(s.maxMs, d);
  };
  // 1 ms resolution: the timer that samples the delay is itself a small load on the loop.
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const t = performance.now();
  try {
    const value = await fn();
    return {
      value,
      report: {
        wallMs: performance.now() - t,
        loopMaxMs: loop.max / 1e6,
        loopP99Ms: loop.percentile(99) / 1e6,
        spans,
      },
    };
  } finally {
    loop.disable();
    record = null;
  }
}

/** The event loop's delay as one table cell: "max 88.3 ms, p99 41.2 ms". */
export function loopText(r: SpanReport): string {
  return `max ${ms(r.loopMaxMs)}, p99 ${ms(r.loopP99Ms)}`;
}

/** The spans as lines for the log, the largest total first. */
export function spanLines(r: SpanReport): string[] {
  return Object.entries(r.spans)
    .sort(([, a], [, b]) => b.totalMs - a.totalMs)
    .map(
      ([name, s]) =>
        `${name}: ${s.count} calls, ${ms(s.totalMs)} total (${((s.totalMs / r.wallMs) * 100).toFixed(0)}% of ` +
        `${ms(r.wallMs)}), longest ${ms(s.maxMs)}`,
    );
}
