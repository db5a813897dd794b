import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * How often the event-loop lag monitor samples, ms. prom-client's default (10 ms) wakes an idle
 * daemon 100 times a second, in every worker and the primary: that timer was about three
 * quarters of an idle daemon's CPU (bench/idle.ts: median 10.3 ms/s before, 2.3 after, for one
 * process; found with strace). At 100 ms a stall still shows in `nodejs_eventloop_lag_*`
 * whenever it spans a sample, which every stall worth an alert (tens of ms and up) does or
 * nearly does.
 */
export const EVENT_LOOP_MONITOR_MS = 100;

/** prom-client's process and Node.js metrics (`process_*`, `nodejs_*`) into `register`. */
export function collectProcessMetrics(register: Registry, prefix?: string): void {
  collectDefaultMetrics({
    register,
    eventLoopMonitoringPrecision: EVENT_LOOP_MONITOR_MS,
    ...(prefix === undefined ? {} : { prefix }),
  });
}
