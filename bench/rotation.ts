/**
 * 5. Rotation under load: `serve --workers 2` with a scope whose keys rotate every few seconds,
 * tokens signed continuously and each verified at once and again a few seconds later (when its
 * key may have retired) by two consumers of the daemon's JWKS: jose's createRemoteJWKSet (the
 * usual relying party; its cache age set to the scope's jwksMaxAge, as a relying party honouring
 * Cache-Control would) and keywarden's own verify library. Every token the sign route returns is
 * valid, so every failed verification is a bug: the count must be 0. Also reports sign latency
 * around each key generation and each key switch.
 */
import { performance } from 'node:perf_hooks';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { createVerifier } from '@keywarden/verify';
import type { BenchPlan } from './lib/bench-policy';
import { prepareKeywarden } from './lib/keywarden';
import { cpuSample, othersShare } from './lib/machine';
import type { Report } from './lib/report';
import { ms, percentile } from './lib/stats';

const POLICY = {
  jwksMaxAge: '1s',
  prepublish: '3s',
  activeFor: '5s',
  verifyGrace: '10s',
  maxTokenTtl: '10s',
  destroyAfter: '5s',
  maxKeyLifetime: '30s',
};
const SIGNERS = 8;
const RECHECK_AFTER_MS = 6000;
/** Half-width of the window around a rotation event in which sign latency is looked at. */
const WINDOW_MS = 250;
/** Bound on sign requests per signer loop, whatever the clock says. */
const MAX_PER_SIGNER = 2_000_000;

interface Sample {
  at: number;
  latencyMs: number;
  kid: string;
}

export async function benchRotation(report: Report, plan: BenchPlan): Promise<void> {
  report.section('5. Rotation under load');
  const seconds = plan.quick ? 20 : 60;
  const kw = await prepareKeywarden({
    scopes: [{ name: 'rot', policy: POLICY, schedule: '* * * * *' }],
    sessions: 4,
    keyRefreshSeconds: 1,
  });
  try {
    const secret = await kw.addClient('bench', ['rot:sign']);
    const server = await kw.serve(2);
    const issuer = `${kw.baseUrl}/scopes/rot`;
    const jwksUri = `${issuer}/.well-known/jwks.json`;
    const audience = 'rot-api';
    const jose = createRemoteJWKSet(new URL(jwksUri), { cacheMaxAge: 1000 });
    const library = createVerifier({ issuer, audience, jwksUri });

    const samples: Sample[] = [];
    const signErrors = new Map<string, number>();
    const failures = new Map<string, number>();
    let verified = 0;
    const fail = (what: string) => failures.set(what, (failures.get(what) ?? 0) + 1);
    const verifyBoth = async (token: string, when: string) => {
      try {
        await jwtVerify(token, jose, { issuer, audience, algorithms: ['ES256'] });
        verified++;
      } catch (e) {
        fail(`jose ${when}: ${(e as Error).message}`);
      }
      const r = await library.verify(token);
      if (r.valid) verified++;
      else fail(`library ${when}: ${r.reason}`);
    };

    // Key generations seen from outside: when a kid first appears in the JWKS.
    const kidFirstSeen = new Map<string, number>();
    const start = performance.now();
    const end = start + seconds * 1000;
    const pending: Promise<void>[] = [];
    const before = cpuSample();
    const watcher = (async () => {
      while (performance.now() < end) {
        try {
          const body = (await (await fetch(jwksUri)).json()) as { keys: { kid: string }[] };
          for (const k of body.keys) if (!kidFirstSeen.has(k.kid)) kidFirstSeen.set(k.kid, performance.now());
        } catch {
          // a failed poll only blurs the timeline
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const signer = async () => {
      for (let i = 0; i < MAX_PER_SIGNER && performance.now() < end; i++) {
        const t = performance.now();
        let res: Response;
        try {
          res = await fetch(`${kw.baseUrl}/v1/scopes/rot/sign`, {
            method: 'POST',
            headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
            body: JSON.stringify({ claims: { sub: `user-${i}`, aud: audience } }),
          });
        } catch (e) {
          signErrors.set((e as Error).message, (signErrors.get((e as Error).message) ?? 0) + 1);
          continue;
        }
        const latencyMs = performance.now() - t;
        const body = (await res.json()) as { token?: string; kid?: string; error?: { code: string } };
        if (res.status !== 200 || !body.token || !body.kid) {
          const code = body.error?.code ?? String(res.status);
          signErrors.set(code, (signErrors.get(code) ?? 0) + 1);
          continue;
        }
        samples.push({ at: t, latencyMs, kid: body.kid });
        const token = body.token;
        await verifyBoth(token, 'at once');
        if (i % 10 === 0) {
          pending.push(
            new Promise<void>((r) => setTimeout(r, RECHECK_AFTER_MS)).then(() => verifyBoth(token, 'later')),
          );
        }
      }
    };
    await Promise.all([watcher, ...Array.from({ length: SIGNERS }, signer)]);
    await Promise.all(pending);
    const others = othersShare(before, cpuSample());
    await server.stop();

    // Key switches: the first token signed with each kid.
    const switches: number[] = [];
    let lastKid = '';
    for (const s of [...samples].sort((a, b) => a.at - b.at)) {
      if (s.kid !== lastKid) {
        if (lastKid) switches.push(s.at);
        lastKid = s.kid;
      }
    }
    const generations = [...kidFirstSeen.values()].filter((t) => t > start + 500);
    const near = (events: number[]) =>
      samples.filter((s) => events.some((e) => Math.abs(s.at - e) <= WINDOW_MS)).map((s) => s.latencyMs);
    const all = samples.map((s) => s.latencyMs);
    const row = (name: string, l: number[]) => [
      name,
      l.length,
      l.length ? ms(percentile(l, 50)) : '-',
      l.length ? ms(percentile(l, 99)) : '-',
      l.length ? ms(Math.max(...l)) : '-',
    ];
    const failed = [...failures.values()].reduce((a, b) => a + b, 0);
    report.note(
      `\`serve --workers 2\`, policy ${JSON.stringify(POLICY)}, keyRefreshSeconds 1; ${SIGNERS} signing loops for ` +
        `${seconds} s, each token verified at once and every 10th again ${RECHECK_AFTER_MS / 1000} s later by jose ` +
        '(createRemoteJWKSet, cacheMaxAge = jwksMaxAge) and by the keywarden verify library. ' +
        `Others used up to ${(others * 100).toFixed(0)}% of the machine.`,
    );
    report.table(
      [
        'tokens signed',
        'distinct signing keys',
        'verifications passed',
        'valid tokens that failed verification',
        'sign errors',
      ],
      [
        [
          samples.length,
          new Set(samples.map((s) => s.kid)).size,
          verified,
          failed,
          [...signErrors].map(([k, v]) => `${k}: ${v}`).join(', ') || 0,
        ],
      ],
    );
    if (failed > 0) report.note(`Failures: ${[...failures].map(([k, v]) => `${k} (${v})`).join('; ')}`);
    report.note(`Sign latency (window ±${WINDOW_MS} ms around each event):`);
    report.table(
      ['requests', 'count', 'p50', 'p99', 'max'],
      [
        row('all', all),
        row(`around a key generation (${generations.length})`, near(generations)),
        row(`around a key switch (${switches.length})`, near(switches)),
      ],
    );
  } finally {
    await kw.cleanup();
  }
}
