/**
 * 1. Sign: POST /v1/scopes/:scope/sign (authenticated client, small claims, SoftHSM2 keys)
 * against the ideal HSM signer (bench/servers/ideal-signer.ts: same token, same key, same
 * session-pool size, nothing else) and against node-oidc-provider issuing client_credentials
 * JWT access tokens with software keys. One process each, then all cores (2 workers each).
 */
import { isPkcs11Config } from '../src/backends/pkcs11/config';
import { exportJWK, generateKeyPair } from 'jose';
import { STEADY_POLICY, type BenchPlan } from './lib/bench-policy';
import { BENCH_THREADPOOL, prepareKeywarden, type KeywardenSetup } from './lib/keywarden';
import { measureInterleaved, type LoadTarget, type Measured } from './lib/load';
import { freePort, runChild, startYardstick, type Server } from './lib/processes';
import type { Report } from './lib/report';
import { cpuPerThousand, ms, pairedRatio, rate } from './lib/stats';
import { packageVersion } from './lib/versions';

/** PKCS#11 sessions per process, for keywarden and the ideal signer alike. */
export const SIGN_SESSIONS = 4;
const ALGS = ['ES256', 'RS256', 'EdDSA'] as const;
type Alg = (typeof ALGS)[number];
const scopeName = (alg: Alg) => alg.toLowerCase();
const CLIENT = { id: 'bench', secret: 'bench-client-secret-0123456789abcdef' };
const OIDC_AUDIENCE = 'https://api.bench.test';

/** Raw C_SignInit + C_SignAsync on the ES256 scope's key, in a process of its own. */
async function rawPkcs11(kw: KeywardenSetup): Promise<{ rate: number; loopMicros: number }> {
  const key = await kw.signingKey(scopeName('ES256'));
  const hsm = kw.config.backends.hsm;
  if (!isPkcs11Config(hsm)) throw new Error('bench config lacks the hsm backend');
  return runChild<{ rate: number; loopMicros: number }>(
    [
      'bench/raw-pkcs11.ts',
      JSON.stringify({
        module: hsm.module,
        moduleEnv: hsm.moduleEnv,
        tokenLabel: hsm.tokenLabel,
        pin: kw.token.pin,
        ckaId: key.ckaId,
      }),
    ],
    { UV_THREADPOOL_SIZE: BENCH_THREADPOOL },
  );
}

export async function idealSigner(
  kw: KeywardenSetup,
  alg: Alg,
  workers: number,
  nodeArgs: string[] = [],
): Promise<Server> {
  const key = await kw.signingKey(scopeName(alg));
  const hsm = kw.config.backends.hsm;
  if (!isPkcs11Config(hsm)) throw new Error('bench config lacks the hsm backend');
  return startYardstick(
    `ideal signer ${alg} x${workers}`,
    'ideal-signer',
    {
      port: await freePort(),
      workers,
      module: hsm.module,
      moduleEnv: hsm.moduleEnv,
      tokenLabel: hsm.tokenLabel,
      pin: kw.token.pin,
      sessions: SIGN_SESSIONS,
      alg,
      kid: key.kid,
      ckaId: key.ckaId,
      issuer: `${kw.baseUrl}/scopes/${scopeName(alg)}`,
      ttlSeconds: 300,
    },
    { UV_THREADPOOL_SIZE: BENCH_THREADPOOL },
    nodeArgs,
  );
}

async function oidcProvider(alg: Alg, workers: number): Promise<Server> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return startYardstick(
    `oidc-provider ${alg} x${workers}`,
    'oidc-provider',
    {
      port: await freePort(),
      workers,
      alg,
      jwk: await exportJWK(privateKey),
      clientId: CLIENT.id,
      clientSecret: CLIENT.secret,
      audience: OIDC_AUDIENCE,
    },
    { UV_THREADPOOL_SIZE: BENCH_THREADPOOL },
  );
}

const claimsBody = (alg: Alg) =>
  JSON.stringify({ claims: { sub: 'user-1', aud: `${scopeName(alg)}-api`, scope: 'read' } });

function targets(alg: Alg, kw: Server, secret: string, ideal: Server, oidc: Server | null): LoadTarget[] {
  const json = { 'content-type': 'application/json' };
  const out: LoadTarget[] = [
    {
      name: `keywarden ${alg}`,
      url: `${kw.baseUrl}/v1/scopes/${scopeName(alg)}/sign`,
      method: 'POST',
      headers: { ...json, authorization: `Bearer ${secret}` },
      body: claimsBody(alg),
      pid: kw.pid,
    },
    {
      name: `ideal signer ${alg}`,
      url: `${ideal.baseUrl}/sign`,
      method: 'POST',
      headers: json,
      body: claimsBody(alg),
      pid: ideal.pid,
    },
  ];
  if (oidc) {
    out.push({
      name: `oidc-provider ${alg}`,
      url: `${oidc.baseUrl}/token`,
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${CLIENT.id}:${CLIENT.secret}`).toString('base64')}`,
      },
      body: 'grant_type=client_credentials&scope=api%3Aread',
      pid: oidc.pid,
    });
  }
  return out;
}

/** Checks every target answers 200 with a token before measuring it. */
async function smoke(ts: LoadTarget[]): Promise<void> {
  for (const t of ts) {
    const r = await fetch(t.url, {
      method: t.method ?? 'GET',
      headers: t.headers ?? {},
      body: t.body ?? null,
    });
    const text = await r.text();
    if (r.status !== 200 || !/"(token|access_token)":"ey/.test(text)) {
      throw new Error(`${t.name}: ${r.status} ${text.slice(0, 300)}`);
    }
  }
}

function rows(ms_: Measured[]): (string | number)[][] {
  const kw = ms_[0]!;
  const rates = (m: Measured) => m.reps.map((r) => r.rps);
  return ms_.map((m) => [
    m.name,
    rate(m.rps),
    ms(m.p50),
    ms(m.p99),
    m === kw ? '' : pairedRatio(rates(kw), rates(m)),
    cpuPerThousand(m.serverUs),
    cpuPerThousand(m.loadUs),
    `${(m.othersMax * 100).toFixed(0)}%`,
    m.failures,
  ]);
}

const HEAD = [
  'server',
  'tokens/s (median)',
  'p50',
  'p99',
  'keywarden ÷ this: median of per-round ratios (spread)',
  'server CPU per 1,000 tokens',
  'wrk CPU per 1,000',
  'others max',
  'failed',
];

export async function benchSign(report: Report, plan: BenchPlan): Promise<void> {
  const algs = plan.algs ? ALGS.filter((a) => plan.algs!.includes(a)) : ALGS;
  const unknown = (plan.algs ?? []).filter((a) => !(ALGS as readonly string[]).includes(a));
  if (unknown.length > 0) throw new Error(`--alg takes ${ALGS.join(', ')}; not ${unknown.join(', ')}`);
  report.section('1. Sign');
  const kw = await prepareKeywarden({
    scopes: ALGS.map((alg) => ({ name: scopeName(alg), alg, policy: STEADY_POLICY })),
    sessions: SIGN_SESSIONS,
  });
  const servers: Server[] = [];
  try {
    const secret = await kw.addClient(
      'bench',
      ALGS.map((a) => `${scopeName(a)}:sign`),
    );
    report.note(
      `keywarden: \`serve --workers N\`, ${SIGN_SESSIONS} PKCS#11 sessions per process, SQLite store, ` +
        `client authenticated by Bearer secret, body \`${claimsBody('ES256')}\`. Ideal signer: same token and key, ` +
        `${SIGN_SESSIONS} sessions, C_SignAsync. oidc-provider ${packageVersion('oidc-provider')}: ` +
        'client_credentials, JWT access tokens, software key, client_secret_basic. ' +
        `Load: wrk -t1 -c${plan.connections} in its own process; ${plan.reps} interleaved rounds of ${plan.seconds} s after ${plan.warmupSeconds} s warm-up; ` +
        `ratios are medians of per-round paired ratios with their range; CPU is the server's processes (workers included) and wrk's own; ` +
        `UV_THREADPOOL_SIZE=${BENCH_THREADPOOL} everywhere.`,
    );

    // One process each.
    const kw1 = await kw.serve(1);
    servers.push(kw1);
    for (const alg of algs) {
      const ideal = await idealSigner(kw, alg, 1);
      const oidc = await oidcProvider(alg, 1);
      try {
        const ts = targets(alg, kw1, secret, ideal, oidc);
        await smoke(ts);
        const m = await measureInterleaved(ts, plan);
        report.note(`**${alg}, one process each**`);
        report.table(HEAD, rows(m));
        if (alg === 'ES256') {
          // What the token alone allows: any Node signer on it pays this per token.
          const raw = await rawPkcs11(kw);
          report.note(
            `Raw PKCS#11 on the same token and key (bench/raw-pkcs11.ts: C_SignInit + C_SignAsync, ` +
              `4 sessions, 16 in flight, no HTTP): ${rate(raw.rate)} signatures, ` +
              `${raw.loopMicros.toFixed(0)} µs of event-loop time each.`,
          );
        }
      } finally {
        await ideal.stop();
        await oidc.stop();
      }
    }
    await kw1.stop();
    servers.pop();

    // All cores: 2 workers each (node:cluster), ES256.
    if (!algs.includes('ES256')) return;
    const kw2 = await kw.serve(2);
    servers.push(kw2);
    const ideal2 = await idealSigner(kw, 'ES256', 2);
    servers.push(ideal2);
    const oidc2 = await oidcProvider('ES256', 2);
    servers.push(oidc2);
    const ts = targets('ES256', kw2, secret, ideal2, oidc2);
    await smoke(ts);
    const m = await measureInterleaved(ts, plan);
    report.note('**ES256, all cores: 2 worker processes each**');
    report.table(HEAD, rows(m));
  } finally {
    for (const s of servers) await s.stop();
    await kw.cleanup();
  }
}
