import { availableParallelism } from 'node:os';
import { InvalidArgumentError } from 'commander';

/** Upper bound on `--workers`: far more processes than cores only adds memory and contention. */
export const MAX_WORKERS = 64;

/** The default worker count: one per CPU this process may run on. */
export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(availableParallelism(), MAX_WORKERS));
}

/** Parses `--workers N` (1..64) for commander. */
export function parseWorkerCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isInteger(n) || n < 1 || n > MAX_WORKERS) {
    throw new InvalidArgumentError(`must be an integer from 1 to ${MAX_WORKERS}`);
  }
  return n;
}
