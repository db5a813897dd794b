/**
 * 3. Verify: the relying-party library (createVerifier from @keywarden/verify: complete validation,
 * JWKS from the running daemon, cached) against bare jose.jwtVerify with the same public key
 * (imported once) and the same checks jose offers (issuer, audience, algorithm). Tokens come
 * from keywarden's sign route. Sequential (one verification at a time) and 16 concurrent.
 */
import { performance } from 'node:perf_hooks';
import { importJWK, jwtVerify, type JWK } from 'jose';
import { createVerifier } from '@keywarden/verify';
import { STEADY_POLICY, type BenchPlan } from './lib/bench-policy';
import { prepareKeywarden } from './lib/keywarden';
import { cpuSample, othersShare } from './lib/machine';
import type { Report } from './lib/report';
import { median, rate, ratio } from './lib/stats';

const ALGS = ['ES256', 'RS256', 'EdDSA'] as const;
const TOKENS = 64;
/** Bound on iterations of one timed loop, whatever the clock says. */
const MAX_ITERATIONS = 50_000_000;

type VerifyOne = (token: string) => Promise<boolean>;

/** Verifications per second over `seconds`, with `concurrency` loops; counts failures. */
async function timed(
  verify: VerifyOne,
  tokens: string[],
  concurrency: number,
  seconds: number,
): Promise<{ rate: number; failed: number; others: number }> {
  const before = cpuSample();
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  let next = 0;
  const loop = async () => {
    while (performance.now() < end && done < MAX_ITERATIONS) {
      const t = tokens[next++ % tokens.length]!;
      if (!(await verify(t))) failed++;
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsed = (performance.now() - start) / 1000;
  return { rate: done / elapsed, failed, others: othersShare(before, cpuSample()) };
}

export async function benchVerify(report: Report, plan: BenchPlan): Promise<void> {
  report.section('3. Verify (relying-party library vs bare jose)');
  const seconds = plan.quick ? 2 : 3;
  const kw = await prepareKeywarden({
    scopes: ALGS.map((alg) => ({ name: alg.toLowerCase(), alg, policy: STEADY_POLICY })),
    sessions: 4,
  });
  const rowsOut: (string | number)[][] = [];
  try {
    const secret = await kw.addClient(
      'bench',
      ALGS.map((a) => `${a.toLowerCase()}:sign`),
    );
    const server = await kw.serve(1);
    try {
      for (const alg of ALGS) {
        const scope = alg.toLowerCase();
        const issuer = `${kw.baseUrl}/scopes/${scope}`;
        const audience = `${scope}-api`;
        const tokens: string[] = [];
        for (let i = 0; i < TOKENS; i++) {
          const r = await fetch(`${kw.baseUrl}/v1/scopes/${scope}/sign`, {
            method: 'POST',
            headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
            body: JSON.stringify({ claims: { sub: `user-${i}`, aud: audience, scope: 'read' } }),
          });
          if (r.status !== 200) throw new Error(`sign ${scope}: ${r.status} ${await r.text()}`);
          tokens.push(((await r.json()) as { token: string }).token);
        }
        const jwksUri = `${issuer}/.well-known/jwks.json`;
        const jwks = (await (await fetch(jwksUri)).json()) as { keys: JWK[] };
        const key = await importJWK(jwks.keys[0]!, alg);
        const verifier = createVerifier({ issuer, audience, jwksUri });
        const library: VerifyOne = async (t) => (await verifier.verify(t)).valid;
        const jose: VerifyOne = async (t) => {
          try {
            await jwtVerify(t, key, { issuer, audience, algorithms: [alg] });
            return true;
          } catch {
            return false;
          }
        };
        for (const concurrency of [1, 16]) {
          // Warm-up (JIT, the verifier's first JWKS fetch), then interleaved repetitions.
          await timed(library, tokens, concurrency, 1);
          await timed(jose, tokens, concurrency, 1);
          const lib: number[] = [];
          const bare: number[] = [];
          let failed = 0;
          let others = 0;
          for (let i = 0; i < plan.reps; i++) {
            const a = await timed(library, tokens, concurrency, seconds);
            const b = await timed(jose, tokens, concurrency, seconds);
            lib.push(a.rate);
            bare.push(b.rate);
            failed += a.failed + b.failed;
            others = Math.max(others, a.others, b.others);
            process.stderr.write(
              `  ${alg} x${concurrency} rep ${i + 1}: library ${rate(a.rate)} jose ${rate(b.rate)} (others ${(Math.max(a.others, b.others) * 100).toFixed(0)}%)\n`,
            );
          }
          rowsOut.push([
            alg,
            concurrency === 1 ? 'sequential' : `${concurrency} concurrent`,
            rate(median(lib)),
            rate(median(bare)),
            ratio(median(lib), median(bare)),
            `${(others * 100).toFixed(0)}%`,
            failed,
          ]);
        }
      }
    } finally {
      await server.stop();
    }
  } finally {
    await kw.cleanup();
  }
  report.note(
    `In one process (the benchmark's): ${TOKENS} distinct tokens per alg signed by keywarden, verified in a loop for ` +
      `${plan.reps} x ${seconds} s after a 1 s warm-up, library and jose interleaved. jose gets a CryptoKey imported ` +
      'once (importJWK) and checks signature, alg, iss, aud, exp/nbf; the library does the complete validation (I6).',
  );
  report.table(
    ['alg', 'mode', 'library verifications/s', 'bare jose/s', 'library ÷ jose', 'others max', 'failed'],
    rowsOut,
  );
}
