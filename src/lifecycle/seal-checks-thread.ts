/**
 * A worker thread of seal-checks.ts: answers each message (a chunk of seal checks) with their
 * outcomes, in order. It holds nothing between messages; its imported public keys die with it.
 */
import { parentPort } from 'node:worker_threads';
import { checkHere, THREAD_WINDOW, type SealCheck } from './seal-checks';

const port = parentPort;
if (!port) throw new Error('seal-checks-thread runs as a worker thread only');
port.on('message', (checks: SealCheck[]) => {
  void checkHere(checks, THREAD_WINDOW).then((outcomes) => port.postMessage(outcomes));
});
