import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * How often the event-loop lag monitor samples, ms. prom-client's default (10 ms) wakes an idle
 * daemon 100 times a second, in every worker and the primary: that timer was nearly all of an
 * idle daemon's CPU (about 1% of a core per process, measured with strace and per-thread
 * /proc times). At 100 ms a stall still shows in `nodejs_eventloop_lag_*` whenever it spans a
 * sample, which every stall worth an alert (tens of ms and up) does or nearly does.
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
