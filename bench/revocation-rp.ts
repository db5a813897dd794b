/**
 * A relying-party process for bench/revocation.ts: `RPS` verifiers of one scope, the first
 * `SUBSCRIBED` of them subscribed to its key-events stream (one connection each), the rest
 * polling by Cache-Control only. Driven over IPC by the parent: `watch` a token (every verifier
 * must accept it first), then report, per verifier, the wall-clock instant it first refused it.
 */
import { createVerifier, type Verifier } from '@keywarden/verify';

interface WatchMessage {
  type: 'watch';
  token: string;
  /** Give up on a verifier this long after `revoked` arrived. */
  timeoutMs: number;
}
type ParentMessage = WatchMessage | { type: 'revoked' } | { type: 'stop' };

const issuer = process.env.RP_ISSUER!;
const audience = process.env.RP_AUDIENCE!;
const total = Number(process.env.RPS);
const subscribed = Number(process.env.SUBSCRIBED);
const POLL_MS = 20;

const verifiers: { v: Verifier; subscribed: boolean }[] = [];
for (let i = 0; i < total; i++) {
  const sub = i < subscribed;
  verifiers.push({
    v: createVerifier({ issuer, audience, ...(sub ? { keyEvents: true } : {}) }),
    subscribed: sub,
  });
}

const send = (m: unknown) => process.send!(m);
let current: { token: string; timeoutMs: number; revokedAt: number | null } | null = null;

async function watch(m: WatchMessage): Promise<void> {
  current = { token: m.token, timeoutMs: m.timeoutMs, revokedAt: null };
  // Every verifier accepts the token first, and every subscription is up.
  for (const { v, subscribed: sub } of verifiers) {
    for (let i = 0; ; i++) {
      const r = await v.verify(m.token);
      const ready = r.valid && (!sub || v.keyEvents().connected);
      if (ready) break;
      if (i > 500) throw new Error(`verifier never ready: ${r.valid ? 'not subscribed' : r.reason}`);
      await new Promise((res) => setTimeout(res, 20));
    }
  }
  send({ type: 'ready' });
  const results = await Promise.all(
    verifiers.map(async ({ v, subscribed: sub }) => {
      for (;;) {
        const r = await v.verify(m.token);
        if (!r.valid) return { subscribed: sub, refusedAt: Date.now(), reason: r.reason };
        const since = current?.revokedAt;
        if (since !== null && since !== undefined && Date.now() - since > m.timeoutMs)
          return { subscribed: sub, refusedAt: null, reason: null };
        await new Promise((res) => setTimeout(res, POLL_MS));
      }
    }),
  );
  send({ type: 'refused', results });
}

process.on('message', (m: ParentMessage) => {
  if (m.type === 'watch') {
    watch(m).catch((e: Error) => send({ type: 'error', message: e.message }));
  } else if (m.type === 'revoked') {
    if (current) current.revokedAt = Date.now();
  } else if (m.type === 'stop') {
    for (const { v } of verifiers) v.close();
    process.exit(0);
  }
});
send({ type: 'started' });
