/**
 * Fuzzing the token routes of a real daemon: random, structured and mutated bodies, content
 * types and Authorization headers. Whatever arrives, the answer is a 2xx/4xx JSON document
 * (never a 5xx), a 200 from verify always carries a known reason code, and the daemon is still
 * healthy and signing afterwards.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { REASON_CODES } from '@keywarden/verify';
import { startDaemon, type Daemon } from '../helpers/daemon';

const RUNS = 300;
const AUD = 'fuzz-api';

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'text/plain',
  'application/x-www-form-urlencoded',
  'application/octet-stream',
  'application/jwt',
  'multipart/form-data; boundary=x',
  '',
];

/** Mostly JSON, so most requests get past the content-type check to the interesting parts. */
const contentType = fc.oneof(
  { arbitrary: fc.constant('application/json'), weight: CONTENT_TYPES.length },
  { arbitrary: fc.constantFrom(...CONTENT_TYPES), weight: 3 },
);

const SPECIAL_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'iss',
  'aud',
  'exp',
  'iat',
  'nbf',
  'jti',
  'kid',
  'alg',
];

/** Applies a few random edits (replace, insert, delete a character) to a text. */
const mutated = (base: fc.Arbitrary<string>) =>
  fc
    .tuple(
      base,
      fc.array(
        fc.tuple(
          fc.constantFrom('replace', 'insert', 'delete'),
          fc.nat(),
          fc.string({ minLength: 1, maxLength: 3 }),
        ),
        { minLength: 1, maxLength: 6 },
      ),
    )
    .map(([text, edits]) => {
      let t = text;
      for (const [op, at, s] of edits) {
        const i = t.length === 0 ? 0 : at % t.length;
        if (op === 'replace') t = t.slice(0, i) + s + t.slice(i + 1);
        else if (op === 'insert') t = t.slice(0, i) + s + t.slice(i);
        else t = t.slice(0, i) + t.slice(i + 1);
      }
      return t;
    });

const key = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom(...SPECIAL_KEYS));
const claims = fc.oneof(
  fc.dictionary(key, fc.jsonValue({ maxDepth: 12 }), { maxKeys: 12 }),
  fc.dictionary(key, fc.jsonValue({ maxDepth: 3 })).map((c) => ({ ...c, aud: AUD })),
);

const signBody = fc.oneof(
  fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify(v)),
  fc
    .record(
      {
        claims,
        ttlSeconds: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
        header: fc.oneof(fc.record({ typ: fc.string({ maxLength: 80 }) }), fc.object(), fc.constant(null)),
        extra: fc.jsonValue({ maxDepth: 2 }),
      },
      { requiredKeys: [] },
    )
    .map((b) => JSON.stringify(b)),
  // Mostly valid: random claims that carry the right audience, so the signing path is reached.
  fc
    .record({
      claims: fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 4 }), { maxKeys: 8 }),
    })
    .map(({ claims: c }) => JSON.stringify({ claims: { ...c, aud: AUD } })),
  mutated(
    fc.constant(JSON.stringify({ claims: { aud: AUD, sub: 'fuzz', n: [1, { a: 'b' }] }, ttlSeconds: 60 })),
  ),
  fc.string({ maxLength: 200 }),
);

describe('token service fuzz (e2e)', function () {
  this.timeout(300_000);
  let daemon: Daemon;
  let secret: string;
  let realToken: string;

  const send = async (path: string, body: string, contentType: string, authorization?: string) => {
    const headers: Record<string, string> = { authorization: authorization ?? `Bearer ${secret}` };
    if (contentType !== '') headers['content-type'] = contentType;
    const r = await fetch(`${daemon.baseUrl}${path}`, { method: 'POST', headers, body });
    const text = await r.text();
    return { status: r.status, text };
  };

  const assertAnswered = (r: { status: number; text: string }, what: string) => {
    assert.ok(r.status < 500, `${what} -> ${r.status} ${r.text.slice(0, 300)}`);
    // Every answer is JSON: a result or {error: {code, message}}.
    assert.doesNotThrow(() => JSON.parse(r.text), `${what} -> non-JSON ${r.text.slice(0, 100)}`);
  };

  before(async () => {
    daemon = await startDaemon({ scopes: [{ name: 'fuzz', audiences: [AUD] }] });
    const add = await daemon.cli(['--json', 'clients', 'add', 'fuzzer', '--grant', 'fuzz:sign,verify']);
    assert.equal(add.code, 0, add.stderr);
    secret = (JSON.parse(add.stdout) as { secret: string }).secret;
    const r = await send(
      '/v1/scopes/fuzz/sign',
      JSON.stringify({ claims: { aud: AUD } }),
      'application/json',
    );
    assert.equal(r.status, 200, r.text);
    realToken = (JSON.parse(r.text) as { token: string }).token;
  });

  after(async () => {
    await daemon?.stop();
  });

  it(`sign: ${RUNS} random and mutated requests, never a 5xx`, async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(signBody, contentType, async (body, type) => {
        const r = await send('/v1/scopes/fuzz/sign', body, type);
        assertAnswered(r, `${type} ${body.slice(0, 200)}`);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      }),
      { numRuns: RUNS },
    );
    // The fuzz reached both the refusals and the HSM signing path.
    for (const status of [200, 400, 415]) assert.ok(statuses.has(status), JSON.stringify([...statuses]));
  });

  it(`verify: ${RUNS} random and mutated tokens and bodies, never a 5xx; 200s carry a known reason`, async () => {
    const [h, p, s] = realToken.split('.') as [string, string, string];
    const b64 = (v: string) => Buffer.from(v).toString('base64url');
    const kid = (JSON.parse(Buffer.from(h, 'base64url').toString()) as { kid: string }).kid;
    // Headers an attacker would try, on the real payload and signature.
    const header = fc.record(
      {
        alg: fc.oneof(
          fc.constantFrom('ES256', 'ES384', 'RS256', 'PS256', 'EdDSA', 'none', 'HS256'),
          fc.string(),
        ),
        kid: fc.oneof(fc.constant(kid), fc.string({ maxLength: 50 })),
        typ: fc.string({ maxLength: 10 }),
        crit: fc.array(fc.string({ maxLength: 8 }), { maxLength: 2 }),
        jku: fc.webUrl(),
        jwk: fc.object({ maxDepth: 1 }),
      },
      { requiredKeys: ['alg'] },
    );
    const token = fc.oneof(
      { arbitrary: header.map((hh) => `${b64(JSON.stringify(hh))}.${p}.${s}`), weight: 3 },
      mutated(fc.constant(realToken)),
      fc
        .tuple(fc.jsonValue({ maxDepth: 4 }), fc.jsonValue({ maxDepth: 4 }))
        .map(([hh, pp]) => `${b64(JSON.stringify(hh))}.${b64(JSON.stringify(pp))}.${s}`),
      fc.array(fc.constantFrom(h, p, s, '', 'e30', '.'), { maxLength: 6 }).map((parts) => parts.join('.')),
      fc.string({ maxLength: 300 }),
      fc.nat({ max: 20_000 }).map((n) => `${h}.${p}.${'A'.repeat(n)}`),
    );
    const reasons = new Set<string>();
    const body = fc.oneof(
      {
        arbitrary: fc
          .record({ token, audience: fc.oneof(fc.constant(AUD), fc.string({ maxLength: 40 })) })
          .map((b) => JSON.stringify(b)),
        weight: 4,
      },
      mutated(fc.constant(JSON.stringify({ token: realToken, audience: AUD }))),
      fc.jsonValue({ maxDepth: 5 }).map((v) => JSON.stringify(v)),
    );
    await fc.assert(
      fc.asyncProperty(body, contentType, async (b, type) => {
        const r = await send('/v1/scopes/fuzz/verify', b, type);
        assertAnswered(r, `${type} ${b.slice(0, 200)}`);
        if (r.status === 200) {
          const answer = JSON.parse(r.text) as { valid: boolean; reason?: string };
          reasons.add(answer.valid ? 'valid' : (answer.reason ?? ''));
          if (!answer.valid)
            assert.ok((REASON_CODES as readonly string[]).includes(answer.reason ?? ''), r.text);
        }
      }),
      { numRuns: RUNS },
    );
    assert.ok(reasons.size >= 4, `only reached ${[...reasons].join(', ')}`);
  });

  it('random Authorization headers get 401, never a 5xx', async () => {
    const header = fc.oneof(
      fc.stringMatching(/^[\x20-\x7e]{0,300}$/),
      mutated(fc.constant(`Bearer ${secret}`)).filter(
        (v) => /^[\x20-\x7e]*$/.test(v) && v !== `Bearer ${secret}`,
      ),
    );
    await fc.assert(
      fc.asyncProperty(header, async (authorization) => {
        const r = await send(
          '/v1/scopes/fuzz/sign',
          JSON.stringify({ claims: { aud: AUD } }),
          'application/json',
          authorization,
        );
        // A mutation may only change the case of "Bearer" or add spaces; anything else is 401.
        if (r.status !== 200) assert.equal(r.status, 401, `${JSON.stringify(authorization)} -> ${r.text}`);
      }),
      { numRuns: 100 },
    );
  });

  it('the daemon is still up, healthy and signing, and logged no unexpected error', async () => {
    assert.equal((await fetch(`${daemon.baseUrl}/healthz`)).status, 200);
    const r = await send(
      '/v1/scopes/fuzz/sign',
      JSON.stringify({ claims: { aud: AUD } }),
      'application/json',
    );
    assert.equal(r.status, 200);
    const v = await send(
      '/v1/scopes/fuzz/verify',
      JSON.stringify({ token: (JSON.parse(r.text) as { token: string }).token, audience: AUD }),
      'application/json',
    );
    assert.equal((JSON.parse(v.text) as { valid: boolean }).valid, true);
    assert.ok(!daemon.output().includes('unexpected error'), daemon.output().slice(-2000));
  });
});
