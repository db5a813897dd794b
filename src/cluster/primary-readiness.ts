import { randomUUID } from 'node:crypto';
import cluster from 'node:cluster';
import type { Logger } from 'pino';
import type { Readiness, ReadinessCheck } from '../lifecycle';

const REQUEST = 'keywarden:readiness-request';
const RESPONSE = 'keywarden:readiness-response';

interface ReadinessRequest {
  type: typeof REQUEST;
  id: string;
}
interface ReadinessResponse {
  type: typeof RESPONSE;
  id: string;
  check: ReadinessCheck;
}

/**
 * How long a worker's `/readyz` waits for the primary. A primary that cannot answer in this time
 * cannot schedule either: the worker then says it is not ready.
 */
export const PRIMARY_READINESS_TIMEOUT_MS = 3000;

/**
 * The primary's readiness as one check of a worker's: with `serve --workers N` the primary alone
 * runs the scheduler (rotations, revocation replacements, key generation), while the workers
 * answer `/readyz`. Readiness means "can do its job now", and making the next key is part of the
 * job, so a worker is not ready while the primary is not.
 */
export function primaryReadinessCheck(r: Pick<Readiness, 'ok' | 'checks'>): ReadinessCheck {
  if (r.ok) return { ok: true, detail: 'the scheduling process (cluster primary) is ready' };
  const failing = Object.entries(r.checks)
    .filter(([, c]) => !c.ok)
    .map(([name, c]) => `${name}: ${c.detail}`);
  return {
    ok: false,
    detail: `the scheduling process (cluster primary) is not ready: ${failing.join('; ')}`,
  };
}

/** In the primary: answers the workers' readiness requests with `readiness()` (call once). */
export function servePrimaryReadiness(readiness: () => Promise<Readiness>, log: Logger): void {
  cluster.on('message', (worker, message: ReadinessRequest) => {
    if (message?.type !== REQUEST) return;
    const reply = (check: ReadinessCheck) => {
      // A worker that died meanwhile has no channel to answer on.
      if (worker.isConnected())
        worker.send({ type: RESPONSE, id: message.id, check } satisfies ReadinessResponse);
    };
    readiness().then(
      (r) => reply(primaryReadinessCheck(r)),
      (e: Error) => {
        log.warn({ err: e.message }, 'readiness: the scheduling process cannot compute its readiness');
        reply({ ok: false, detail: `the scheduling process (cluster primary) cannot tell: ${e.message}` });
      },
    );
  });
}

/** In a worker: the primary's readiness as one check; not ready when it does not answer in time. */
export function requestPrimaryReadiness(timeoutMs = PRIMARY_READINESS_TIMEOUT_MS): Promise<ReadinessCheck> {
  return new Promise((resolve) => {
    const id = randomUUID();
    const onMessage = (m: ReadinessResponse) => {
      if (m?.type !== RESPONSE || m.id !== id) return;
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve(m.check);
    };
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      resolve({
        ok: false,
        detail: `the scheduling process (cluster primary) did not answer within ${timeoutMs} ms`,
      });
    }, timeoutMs);
    process.on('message', onMessage);
    if (process.connected && process.send) process.send({ type: REQUEST, id } satisfies ReadinessRequest);
  });
}
