import { createPublicKey, type KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { SigningAlg } from '../policy/algorithms';
import type { PublicJwk } from '../policy/key';
import { verifyJwsSignature } from './jws-signature';

/** One seal to check: is `signature` a JWS signature (`alg`) of `input` by the public key `jwk`? */
export interface SealCheck {
  alg: SigningAlg;
  jwk: PublicJwk;
  input: Uint8Array;
  signature: Uint8Array;
}

/** `bad-key`: the public key does not import (off the curve, malformed), so nothing verifies with it. */
export type SealOutcome = 'valid' | 'invalid' | 'bad-key';

/**
 * From how many seals a batch is checked on threads of its own: a start-up's integrity check of
 * every row (100,000 with one scope per tenant), not a reload's few changed rows.
 */
export const SEAL_THREADS_FROM = 1000;

/** Checks sent to a thread at once: few enough messages, and the threads finish close together. */
const CHUNK = 500;

/**
 * The most threads a batch starts, whatever the host's CPU count: os.availableParallelism() follows
 * CPU affinity, not a container's CPU quota, and each thread costs ~9 MiB before any work.
 */
const MAX_THREADS = 4;

/**
 * How many checks wait on a signature at once, on the event loop and on each thread. Each imports
 * its public key where it runs and verifies on libuv's pool, which PKCS#11 signing (C_SignAsync)
 * shares. A thread keeps enough in flight to import the next keys while the pool verifies (4 made
 * a 100,000-row start-up 25% slower); the event loop, which only checks batches below
 * SEAL_THREADS_FROM, keeps fewer. Either way a batch never queues more than a few milliseconds of
 * verification ahead of a token signature (a SIGHUP reload checks every row again while the
 * running generation signs).
 */
export const THREAD_WINDOW = 16;
const HERE_WINDOW = 8;

/**
 * Checks each seal, in order. A batch of SEAL_THREADS_FROM or more runs on worker threads (one
 * per CPU, at most MAX_THREADS), which exit when it is done. Two reasons: importing a public key is ~60 µs of CPU that
 * would otherwise run on the event loop, one row after another; and each import holds ~3 KB of
 * native memory until V8 collects its small KeyObject, which at 100,000 rows is ~300 MiB that the
 * allocator then keeps. A thread's exit frees its keys at once. If the threads cannot run
 * (`onThreadFailure` hears why), the batch is checked here as a smaller one is.
 */
export async function checkSeals(
  checks: readonly SealCheck[],
  opts: { threadsFrom?: number; onThreadFailure?: (e: Error) => void } = {},
): Promise<SealOutcome[]> {
  if (checks.length >= (opts.threadsFrom ?? SEAL_THREADS_FROM)) {
    try {
      return await checkOnThreads(checks);
    } catch (e) {
      opts.onThreadFailure?.(e as Error);
    }
  }
  return checkHere(checks);
}

/** Checks each seal in this thread, `window` at once. */
export async function checkHere(
  checks: readonly SealCheck[],
  window: number = HERE_WINDOW,
): Promise<SealOutcome[]> {
  const outcomes = new Array<SealOutcome>(checks.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < checks.length) {
      const i = next++;
      outcomes[i] = await checkOne(checks[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, checks.length) }, lane));
  return outcomes;
}

/** The public key `jwk` imported, or null when it does not import (off the curve, malformed). */
export function importPublicJwk(jwk: PublicJwk): KeyObject | null {
  try {
    return createPublicKey({ key: { ...jwk }, format: 'jwk' });
  } catch {
    return null;
  }
}

async function checkOne(c: SealCheck): Promise<SealOutcome> {
  const key = importPublicJwk(c.jwk);
  if (!key) return 'bad-key';
  // A check that crossed a thread arrives as a Uint8Array; the primitive takes Buffers.
  const input = Buffer.from(c.input.buffer, c.input.byteOffset, c.input.byteLength);
  const signature = Buffer.from(c.signature.buffer, c.signature.byteOffset, c.signature.byteLength);
  return (await verifyJwsSignature(c.alg, key, input, signature)) ? 'valid' : 'invalid';
}

async function checkOnThreads(checks: readonly SealCheck[]): Promise<SealOutcome[]> {
  const outcomes = new Array<SealOutcome>(checks.length);
  const count = Math.max(1, Math.min(availableParallelism(), MAX_THREADS, Math.ceil(checks.length / CHUNK)));
  const threads: SealThread[] = [];
  let next = 0;
  try {
    for (let i = 0; i < count; i++) threads.push(new SealThread());
    await Promise.all(
      threads.map(async (thread) => {
        while (next < checks.length) {
          const from = next;
          const to = Math.min(checks.length, from + CHUNK);
          next = to;
          const answered = await thread.check(checks.slice(from, to));
          if (answered.length !== to - from) throw new Error('a seal-check thread answered the wrong count');
          for (const [i, o] of answered.entries()) outcomes[from + i] = o;
        }
      }),
    );
  } finally {
    await Promise.all(threads.map((t) => t.stop()));
  }
  return outcomes;
}

/** The thread's module: compiled JavaScript in a build, TypeScript through tsx when run from source (tests). */
function threadModule(): { file: string; execArgv: string[] } {
  const fromSource = __filename.endsWith('.ts');
  return {
    file: `${__dirname}/seal-checks-thread.${fromSource ? 'ts' : 'js'}`,
    execArgv: fromSource ? ['--require', 'tsx/cjs'] : [],
  };
}

/** One worker thread answering one chunk of checks at a time. */
class SealThread {
  private readonly worker: Worker;
  private pending: { resolve(o: SealOutcome[]): void; reject(e: Error): void } | null = null;
  private failed: Error | null = null;

  constructor() {
    const { file, execArgv } = threadModule();
    this.worker = new Worker(file, { execArgv });
    this.worker.on('message', (outcomes: SealOutcome[]) => {
      const p = this.pending;
      this.pending = null;
      p?.resolve(outcomes);
    });
    const fail = (e: Error) => {
      this.failed ??= e;
      const p = this.pending;
      this.pending = null;
      p?.reject(e);
    };
    this.worker.on('error', fail);
    // An answer that cannot be read would otherwise leave its chunk, and the start-up, waiting.
    this.worker.on('messageerror', fail);
    this.worker.on('exit', (code) => fail(new Error(`a seal-check thread exited (code ${code})`)));
  }

  check(checks: SealCheck[]): Promise<SealOutcome[]> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(checks);
    });
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
