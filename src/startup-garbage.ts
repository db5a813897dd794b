import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from 'pino';

const MiB = 1024 * 1024;

/**
 * One full garbage collection, once a serving process has loaded its keys and before it listens.
 *
 * Why: loading a large key set (one scope per tenant: 100,000 rows read, checked against the
 * backend, turned into views) keeps its temporary objects alive across several young-generation
 * collections, so V8 moves them to the old generation, where they wait for the next full
 * collection. With nothing else filling the old generation that can take hours, and meanwhile every
 * young-generation collection costs in proportion to the old generation's size (measured at
 * 100,000 scopes: 470 of 940 MiB were such garbage, each scavenge 3.9 ms instead of 2.5 ms, and
 * the JWKS p99 above 5 ms; docs/benchmarks.md §4). Collected before the first request, it costs
 * start-up time only (~0.4 s at 100,000 scopes, milliseconds for a few scopes).
 *
 * V8 exposes the collection only behind --expose-gc; the flag is set here for this one call and
 * cleared again (the `gc` function exists only in the fresh context made for it, not in the
 * daemon's own).
 */
export function collectStartupGarbage(
  log: Logger,
): { beforeMiB: number; afterMiB: number; ms: number } | null {
  let gc: unknown;
  try {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc');
  } catch {
    gc = undefined;
  } finally {
    // Contexts made later (a library's vm sandbox) get no gc global.
    setFlagsFromString('--no-expose-gc');
  }
  if (typeof gc !== 'function') {
    log.debug('no full garbage collection after start-up: this runtime does not offer one');
    return null;
  }
  const before = process.memoryUsage().heapUsed;
  const start = performance.now();
  (gc as () => void)();
  const result = {
    beforeMiB: Math.round(before / MiB),
    afterMiB: Math.round(process.memoryUsage().heapUsed / MiB),
    ms: Math.round(performance.now() - start),
  };
  log.debug(result, 'start-up garbage collected before serving');
  return result;
}
