import { strict as assert } from 'node:assert';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ABSOLUTE_MAX_KEY_LIFETIME_SECONDS } from '../../../src/policy/scope';
import { KeySetError, type KeySetErrorCode } from '../../../packages/verify/src/errors';
import {
  PRIVATE_JWK_MEMBERS,
  inspectJwks,
  parseJwks,
  toPublishedJwk,
  toPublishedJwks,
} from '../../../packages/verify/src/jwks';
import { importVerificationKey } from '../../../packages/verify/src/import-key';
import { validateToken } from '../../../packages/verify/src/validate-token';
import {
  ALGS,
  DAY_MS,
  ISSUER,
  NOW,
  NOW_S,
  OPTIONS,
  OTHER_ISSUER,
  makeKey,
  publishable,
  tokenFor,
} from './fixtures';

/** A scope's keys as a lookup built from its parsed JWKS, the way the library does it. */
function lookupFromJwks(body: unknown, issuer: string) {
  const keys = parseJwks(body, issuer);
  return (kid: string) => keys.filter((k) => k.kid === kid);
}

describe('published JWK format', () => {
  it('toPublishedJwk copies only public members, plus kid, alg, use, iss, the key times and max_token_ttl', () => {
    for (const alg of ALGS) {
      const key = makeKey(alg);
      const withPrivate = { ...key.publicJwk, ...(key.privateKey.export({ format: 'jwk' }) as object) };
      assert.ok('d' in withPrivate);
      const jwk = toPublishedJwk(publishable(key, { publicJwk: withPrivate as never }), ISSUER);
      const expected = { EC: ['crv', 'x', 'y'], RSA: ['e', 'n'], OKP: ['crv', 'x'] }[key.publicJwk.kty];
      assert.deepEqual(
        Object.keys(jwk).sort(),
        ['kty', ...expected, 'kid', 'alg', 'use', 'iss', 'nbf', 'exp', 'retire_at', 'max_token_ttl'].sort(),
      );
      assert.equal(jwk.use, 'sig');
      assert.equal(jwk.iss, ISSUER);
      assert.equal(jwk.nbf, key.vk.activateAt.getTime() / 1000);
      assert.equal(jwk.retire_at, key.vk.retireAt.getTime() / 1000);
      assert.equal(jwk.exp, key.vk.expiresAt.getTime() / 1000);
      assert.equal(jwk.max_token_ttl, key.vk.maxTokenTtlSeconds);
    }
  });

  it('toPublishedJwk refuses to publish a key without a valid token lifetime bound', () => {
    const key = makeKey('ES256');
    for (const bad of [0, -1, 1.5, NaN, Infinity, ABSOLUTE_MAX_KEY_LIFETIME_SECONDS + 1, undefined]) {
      assert.throws(
        () => toPublishedJwk(publishable(key, { maxTokenTtlSeconds: bad as number }), ISSUER),
        (e: unknown) => hasCode(e, 'KEY_NOT_USABLE'),
        String(bad),
      );
    }
    for (const ok of [1, 300, ABSOLUTE_MAX_KEY_LIFETIME_SECONDS]) {
      assert.equal(toPublishedJwk(publishable(key, { maxTokenTtlSeconds: ok }), ISSUER).max_token_ttl, ok);
    }
  });

  it('rounds sub-second times towards the stricter side', () => {
    const key = makeKey('ES256');
    const t = NOW.getTime() + 400;
    const jwk = toPublishedJwk(
      publishable(key, {
        activateAt: new Date(t),
        retireAt: new Date(t + DAY_MS),
        expiresAt: new Date(t + 2 * DAY_MS),
      }),
      ISSUER,
    );
    assert.equal(jwk.nbf * 1000, NOW.getTime() + 1000);
    assert.equal(jwk.retire_at * 1000, NOW.getTime() + DAY_MS);
    assert.equal(jwk.exp * 1000, NOW.getTime() + 2 * DAY_MS);
  });

  it('importVerificationKey refuses a key without a valid token lifetime bound', () => {
    const key = makeKey('ES256');
    const input = { ...publishable(key), revokedAt: null };
    assert.equal(importVerificationKey(input).ok, true);
    for (const bad of [undefined, 0, -1, 1.5, NaN, ABSOLUTE_MAX_KEY_LIFETIME_SECONDS + 1, '300']) {
      const r = importVerificationKey({ ...input, maxTokenTtlSeconds: bad as number });
      assert.equal(r.ok, false, String(bad));
      assert.match(r.ok ? '' : r.problem, /maxTokenTtlSeconds/);
    }
  });

  it('every member a published JWK carries is described in docs/verify-library.md and docs/api.md', () => {
    const docs = join(__dirname, '../../../docs');
    /** The text of a doc's `## heading` section, up to the next one. */
    const section = (file: string, heading: string) => {
      const text = readFileSync(join(docs, file), 'utf8');
      const start = text.indexOf(`## ${heading}\n`);
      assert.ok(start >= 0, `${file} has no "## ${heading}"`);
      const end = text.indexOf('\n## ', start + 1);
      return text.slice(start, end < 0 ? undefined : end);
    };
    const formatSection = section('verify-library.md', 'Published JWK format');
    const jwksSection = section('api.md', 'JWKS');
    for (const alg of ALGS) {
      for (const member of Object.keys(toPublishedJwk(publishable(makeKey(alg)), ISSUER))) {
        assert.match(
          formatSection,
          new RegExp(`^\\|[^\\n]*\`${member}\``, 'm'),
          `verify-library.md: ${member}`,
        );
        assert.ok(jwksSection.includes(`\`${member}`), `api.md JWKS section: ${member}`);
      }
    }
  });

  it('toPublishedJwk refuses a public JWK that lacks its key members', () => {
    const key = makeKey('ES256');
    assert.throws(
      () =>
        toPublishedJwk(
          publishable(key, { publicJwk: { kty: 'EC', crv: 'P-256', x: key.publicJwk.x! } }),
          ISSUER,
        ),
      (e: unknown) => hasCode(e, 'KEY_NOT_USABLE'),
    );
  });

  it('parseJwks round-trips every alg, and the parsed keys validate real tokens', async () => {
    const keys = ALGS.map((alg) => makeKey(alg));
    const body = JSON.stringify(
      toPublishedJwks(
        keys.map((k) => publishable(k)),
        ISSUER,
      ),
    );
    const parsed = parseJwks(body, ISSUER);
    assert.equal(parsed.length, keys.length);
    for (const key of keys) {
      const vk = parsed.find((p) => p.kid === key.kid)!;
      assert.equal(vk.alg, key.alg);
      assert.equal(vk.revokedAt, null);
      assert.equal(vk.activateAt.getTime(), key.vk.activateAt.getTime());
      assert.equal(vk.retireAt.getTime(), key.vk.retireAt.getTime());
      assert.equal(vk.expiresAt.getTime(), key.vk.expiresAt.getTime());
      assert.equal(vk.maxTokenTtlSeconds, key.vk.maxTokenTtlSeconds);
      const result = await validateToken(tokenFor(key), lookupFromJwks(body, ISSUER), OPTIONS);
      assert.equal(result.valid, true, result.valid ? '' : result.message);
    }
  });

  describe('ignores JWKs that must never verify anything', () => {
    const key = makeKey('ES256');
    const good = () => toPublishedJwk(publishable(key), ISSUER) as unknown as Record<string, unknown>;

    async function assertIgnored(
      jwk: Record<string, unknown>,
      problem: RegExp,
      issuer = ISSUER,
    ): Promise<void> {
      const inspection = inspectJwks({ keys: [jwk] }, issuer);
      assert.ok(inspection.ok);
      assert.equal(inspection.keys.length, 0);
      assert.equal(inspection.ignored.length, 1);
      assert.match(inspection.ignored[0]!.problem, problem);
      // And a token from that key is refused.
      const result = await validateToken(tokenFor(key), lookupFromJwks({ keys: [jwk] }, issuer), {
        ...OPTIONS,
        issuer,
      });
      assert.equal(result.valid, false);
      assert.equal(result.valid === false && result.reason, 'kid_unknown');
    }

    it('the control: the same JWK unmodified is used', () => {
      const inspection = inspectJwks({ keys: [good()] }, ISSUER);
      assert.ok(inspection.ok);
      assert.equal(inspection.keys.length, 1);
    });

    for (const member of PRIVATE_JWK_MEMBERS) {
      it(`a JWK with the private member "${member}"`, async () => {
        await assertIgnored({ ...good(), [member]: 'AAAA' }, /private member/);
      });
    }

    it('a JWK of another scope (iss differs), or without iss', async () => {
      await assertIgnored({ ...good(), iss: OTHER_ISSUER }, /iss/);
      const { iss: _iss, ...noIss } = good();
      await assertIgnored(noIss, /iss/);
      // Published for ISSUER, read as OTHER_ISSUER's set: never used there either.
      await assertIgnored(good(), /iss/, OTHER_ISSUER);
    });

    it('unknown, forbidden or missing alg', async () => {
      for (const alg of ['HS256', 'none', 'ES512', undefined]) await assertIgnored({ ...good(), alg }, /alg/);
    });

    it('an alg that does not fit the key (ES384 on a P-256 key, RS256 on an EC key)', async () => {
      await assertIgnored({ ...good(), alg: 'ES384' }, /P-384/);
      await assertIgnored({ ...good(), alg: 'RS256' }, /RSA/);
    });

    it('use other than sig', async () => {
      await assertIgnored({ ...good(), use: 'enc' }, /use/);
      const { use: _use, ...noUse } = good();
      await assertIgnored(noUse, /use/);
    });

    it('missing or non-numeric lifecycle times', async () => {
      for (const member of ['nbf', 'exp', 'retire_at']) {
        const jwk = good();
        delete jwk[member];
        await assertIgnored(jwk, /NumericDate/);
        await assertIgnored({ ...good(), [member]: String(good()[member]) }, /NumericDate/);
      }
    });

    it('times out of order, or a life longer than the absolute ceiling (I1)', async () => {
      const g = good() as { nbf: number; exp: number; retire_at: number };
      await assertIgnored({ ...good(), retire_at: g.exp + 1 }, /order/);
      await assertIgnored({ ...good(), nbf: g.retire_at + 1 }, /order/);
      await assertIgnored(
        { ...good(), exp: g.nbf + ABSOLUTE_MAX_KEY_LIFETIME_SECONDS + 1, retire_at: g.nbf + 1 },
        /ceiling/,
      );
    });

    it('a missing or malformed max_token_ttl: no bound must not mean any lifetime (fail closed)', async () => {
      const { max_token_ttl: _ttl, ...noBound } = good();
      await assertIgnored(noBound, /max_token_ttl/);
      for (const bad of [
        null,
        '300',
        0,
        -300,
        300.5,
        Infinity,
        NaN,
        ABSOLUTE_MAX_KEY_LIFETIME_SECONDS + 1,
        Number.MAX_SAFE_INTEGER + 2,
        true,
        [300],
        { seconds: 300 },
        300n,
      ]) {
        await assertIgnored({ ...good(), max_token_ttl: bad }, /max_token_ttl/);
      }
      // The same key with a bound at either end of the range is used.
      for (const ok of [1, ABSOLUTE_MAX_KEY_LIFETIME_SECONDS]) {
        const inspection = inspectJwks({ keys: [{ ...good(), max_token_ttl: ok }] }, ISSUER);
        assert.ok(inspection.ok);
        assert.equal(inspection.keys[0]?.maxTokenTtlSeconds, ok);
      }
    });

    it('an RSA key below 2048 bits, and an EC point not on the curve', async () => {
      const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
      const weakJwk = weak.publicKey.export({ format: 'jwk' });
      await assertIgnored(
        { ...good(), kty: 'RSA', crv: undefined, x: undefined, y: undefined, ...weakJwk, alg: 'RS256' },
        /too small/,
      );
      const x = Buffer.from(key.publicJwk.x!, 'base64url');
      x[5] = x[5]! ^ 0xff;
      await assertIgnored({ ...good(), x: x.toString('base64url') }, /not a valid public key/);
    });
  });

  it("bounds token lifetimes by the JWK's max_token_ttl (+ skew), as the signer does", async () => {
    const key = makeKey('ES256', { maxTokenTtlSeconds: 300 });
    const body = JSON.stringify(toPublishedJwks([publishable(key)], ISSUER));
    assert.equal((JSON.parse(body) as { keys: { max_token_ttl: number }[] }).keys[0]?.max_token_ttl, 300);
    const iat = NOW_S - 60;
    const lifetime = (seconds: number) => tokenFor(key, { iat, nbf: iat, exp: iat + seconds });
    for (const seconds of [300, 330]) {
      const ok = await validateToken(lifetime(seconds), lookupFromJwks(body, ISSUER), OPTIONS);
      assert.equal(ok.valid, true, ok.valid ? '' : ok.message);
    }
    const long = await validateToken(lifetime(331), lookupFromJwks(body, ISSUER), OPTIONS);
    assert.equal(long.valid === false && long.reason, 'token_lifetime_exceeded');
    // The published bound is what decides: the same token passes under a bound of 331 s.
    const wider = JSON.stringify(toPublishedJwks([publishable(key, { maxTokenTtlSeconds: 331 })], ISSUER));
    const passes = await validateToken(lifetime(331), lookupFromJwks(wider, ISSUER), OPTIONS);
    assert.equal(passes.valid, true);
  });

  it('keeps two JWKs with one kid, so validation reports kid_ambiguous', async () => {
    const key = makeKey('ES256');
    const other = makeKey('ES256', {}, 1, key.kid);
    const body = toPublishedJwks([publishable(key), publishable(other)], ISSUER);
    const result = await validateToken(tokenFor(key), lookupFromJwks(body, ISSUER), OPTIONS);
    assert.equal(result.valid === false && result.reason, 'kid_ambiguous');
  });

  it('a body that is not a JWKS fails as a whole: inspectJwks says so, parseJwks throws JWKS_INVALID', () => {
    const key = makeKey('ES256');
    const jwk = JSON.stringify(toPublishedJwk(publishable(key), ISSUER));
    for (const body of [
      'not json',
      '[]',
      '{"keys":{}}',
      null,
      42,
      { keys: 'x' },
      `{"keys":[${jwk}],"keys":[]}`,
    ]) {
      const inspection = inspectJwks(body, ISSUER);
      assert.equal(inspection.ok, false, String(body));
      assert.throws(
        () => parseJwks(body, ISSUER),
        (e: unknown) => hasCode(e, 'JWKS_INVALID'),
      );
    }
  });

  it('refuses a JWK whose JSON repeats a member (a second iss hiding behind the first)', () => {
    const key = makeKey('ES256');
    const jwk = JSON.stringify(toPublishedJwk(publishable(key), OTHER_ISSUER)).replace(
      /^\{/,
      `{"iss":"${ISSUER}",`,
    );
    const inspection = inspectJwks(`{"keys":[${jwk}]}`, ISSUER);
    assert.equal(inspection.ok, false);
  });
});

function hasCode(e: unknown, code: KeySetErrorCode): boolean {
  return e instanceof KeySetError && e.code === code;
}
