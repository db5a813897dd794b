import { strict as assert } from 'node:assert';
import { createHmac, generateKeyPairSync, sign } from 'node:crypto';
import * as jose from 'jose';
import fc from 'fast-check';
import { REASON_CODES, type ReasonCode } from '../../../packages/verify/src/reasons';
import {
  DEFAULT_CLOCK_SKEW_SECONDS,
  validateToken,
  type ValidationResult,
} from '../../../packages/verify/src/validate-token';
import { ABSOLUTE_MAX_KEY_LIFETIME_SECONDS } from '../../../src/policy/scope';
import {
  ALGS,
  AUDIENCE,
  DAY_MS,
  ISSUER,
  NOW,
  NOW_S,
  OPTIONS,
  OTHER_ISSUER,
  b64u,
  claims,
  forge,
  lookupOf,
  makeKey,
  tokenFor,
  type TestKey,
} from './fixtures';

/** Every reason this file has provoked; the last test checks none was left untested. */
const provoked = new Set<ReasonCode>();

function expectRefused(result: ValidationResult, reason: ReasonCode): void {
  assert.equal(result.valid, false, `expected ${reason}, but the token was accepted`);
  if (result.valid) return;
  assert.equal(result.reason, reason, `expected ${reason}, got ${result.reason}: ${result.message}`);
  assert.ok(result.message.length > 0);
  provoked.add(reason);
}

function expectValid(result: ValidationResult): asserts result is Extract<ValidationResult, { valid: true }> {
  assert.equal(result.valid, true, result.valid ? '' : `${result.reason}: ${result.message}`);
}

describe('validateToken', () => {
  let es256: TestKey;
  let rs256: TestKey;

  before(() => {
    es256 = makeKey('ES256');
    rs256 = makeKey('RS256');
  });

  describe('accepts', () => {
    for (const alg of ALGS) {
      it(`a ${alg} token made by jose (an independent signer) with every claim right`, async () => {
        const key = makeKey(alg);
        const token = await new jose.SignJWT({ sub: 'user-1' })
          .setProtectedHeader({ alg, kid: key.kid, typ: 'JWT' })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setIssuedAt(NOW_S - 10)
          .setNotBefore(NOW_S - 10)
          .setExpirationTime(NOW_S + 300)
          .sign(key.privateKey);
        const result = await validateToken(token, lookupOf(key.vk), OPTIONS);
        expectValid(result);
        assert.equal(result.kid, key.kid);
        assert.equal(result.header.alg, alg);
        assert.equal(result.claims.sub, 'user-1');
        assert.equal(result.claims.iss, ISSUER);
      });
    }

    it('an aud array that contains the audience', async () => {
      const token = tokenFor(es256, { aud: ['other-api', AUDIENCE] });
      expectValid(await validateToken(token, lookupOf(es256.vk), OPTIONS));
    });

    it('a token from a retired key that was issued while the key was active', async () => {
      const key = makeKey('ES256', {
        activateAt: new Date(NOW.getTime() - 10 * DAY_MS),
        retireAt: new Date(NOW.getTime() - 60_000),
      });
      const token = tokenFor(key, { iat: NOW_S - 120, nbf: NOW_S - 120 });
      expectValid(await validateToken(token, lookupOf(key.vk), OPTIONS));
    });

    it('a token just past exp but within the clock skew, and refuses it with skew 0', async () => {
      const token = tokenFor(es256, { exp: NOW_S - 10 });
      expectValid(await validateToken(token, lookupOf(es256.vk), OPTIONS));
      expectRefused(
        await validateToken(token, lookupOf(es256.vk), { ...OPTIONS, clockSkewSeconds: 0 }),
        'token_expired',
      );
    });

    it('a key whose revocation lies in the future (state is a function of now)', async () => {
      const key = makeKey('ES256', { revokedAt: new Date(NOW.getTime() + 60_000) });
      expectValid(await validateToken(tokenFor(key), lookupOf(key.vk), OPTIONS));
    });
  });

  describe('structure', () => {
    it('token_too_large: a token over maxTokenBytes, before any parsing', async () => {
      const token = tokenFor(es256, { pad: 'x'.repeat(9000) });
      expectRefused(await validateToken(token, lookupOf(es256.vk), OPTIONS), 'token_too_large');
      // The same token is fine under a larger limit: the size is the only thing wrong with it.
      expectValid(await validateToken(token, lookupOf(es256.vk), { ...OPTIONS, maxTokenBytes: 20_000 }));
      expectRefused(await validateToken('a'.repeat(8193), lookupOf(es256.vk), OPTIONS), 'token_too_large');
    });

    it('token_malformed: not three parts', async () => {
      const token = tokenFor(es256);
      const [h, p, s] = token.split('.');
      for (const bad of [`${h}.${p}`, `${token}.${s}`, '', 'abc', '..', `.${p}.${s}`, `${h}..${s}`]) {
        expectRefused(await validateToken(bad, lookupOf(es256.vk), OPTIONS), 'token_malformed');
      }
    });

    it('token_malformed: invalid, padded or non-canonical base64url', async () => {
      const token = tokenFor(es256);
      const [h, p, s] = token.split('.') as [string, string, string];
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      // 64 signature bytes take 86 characters; the last one carries 4 unused (zero) bits.
      // Setting one gives a second spelling of the same bytes, i.e. a malleable token.
      const lastIndex = alphabet.indexOf(s.charAt(s.length - 1));
      assert.equal(lastIndex & 0xf, 0);
      const nonCanonical = `${h}.${p}.${s.slice(0, -1)}${alphabet.charAt(lastIndex + 1)}`;
      assert.deepEqual(Buffer.from(nonCanonical.split('.')[2]!, 'base64url'), Buffer.from(s, 'base64url'));
      for (const bad of [
        `${h}.${p}.${s}=`,
        `${h}=.${p}.${s}`,
        `${h}.${p}.${s.slice(0, -1)}*`,
        `${h}.${p} .${s}`,
        `${h}.${p.slice(0, 5)}+${p.slice(6)}.${s}`,
        `${h}.${p.slice(0, 5)}/${p.slice(6)}.${s}`,
        nonCanonical,
      ]) {
        expectRefused(await validateToken(bad, lookupOf(es256.vk), OPTIONS), 'token_malformed');
      }
    });

    it('token_malformed: a header that is not JSON, or JSON but not an object', async () => {
      const p = b64u(JSON.stringify(claims()));
      for (const header of ['not json', '["ES256"]', 'null', '"ES256"', '42']) {
        expectRefused(
          await validateToken(`${b64u(header)}.${p}.${b64u('sig')}`, lookupOf(es256.vk), OPTIONS),
          'token_malformed',
        );
      }
    });

    it('token_malformed: a payload that is not a JSON object, or not UTF-8', async () => {
      const header = { alg: 'ES256', kid: es256.kid };
      for (const payload of ['[1,2]', 'true', '{"a":']) {
        expectRefused(
          await validateToken(forge(header, payload, es256.privateKey), lookupOf(es256.vk), OPTIONS),
          'token_malformed',
        );
      }
      const h = b64u(JSON.stringify(header));
      const notUtf8 = Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]).toString('base64url');
      expectRefused(
        await validateToken(`${h}.${notUtf8}.${b64u('x')}`, lookupOf(es256.vk), OPTIONS),
        'token_malformed',
      );
    });

    it('token_malformed: a non-string token', async () => {
      for (const bad of [undefined, null, 42, {}, ['a.b.c']]) {
        expectRefused(
          await validateToken(bad as unknown as string, lookupOf(es256.vk), OPTIONS),
          'token_malformed',
        );
      }
    });

    it('duplicate_member: two kid members in the header (JSON.parse would keep the last)', async () => {
      const decoy = makeKey('ES256', {}, 1);
      const header = `{"alg":"ES256","kid":${JSON.stringify(decoy.kid)},"kid":${JSON.stringify(es256.kid)}}`;
      const token = forge(header, claims(), es256.privateKey, 'ES256');
      // Proof the attack is real: a last-wins parser would verify this token with es256.
      assert.equal((JSON.parse(header) as { kid: string }).kid, es256.kid);
      expectRefused(await validateToken(token, lookupOf(es256.vk, decoy.vk), OPTIONS), 'duplicate_member');
    });

    it('duplicate_member: an escaped spelling of the same name, and duplicates in the payload', async () => {
      const header = `{"alg":"ES256","kid":${JSON.stringify(es256.kid)},"\\u006bid":"other"}`;
      expectRefused(
        await validateToken(forge(header, claims(), es256.privateKey, 'ES256'), lookupOf(es256.vk), OPTIONS),
        'duplicate_member',
      );
      const payload = JSON.stringify(claims()).replace(/^\{/, `{"aud":"someone-else",`);
      expectRefused(
        await validateToken(
          forge({ alg: 'ES256', kid: es256.kid }, payload, es256.privateKey),
          lookupOf(es256.vk),
          OPTIONS,
        ),
        'duplicate_member',
      );
    });
  });

  describe('header rules', () => {
    it('alg_forbidden: alg none with an empty signature, and with any signature', async () => {
      const none = forge({ alg: 'none', kid: es256.kid }, claims(), null);
      assert.ok(none.endsWith('.'));
      expectRefused(await validateToken(none, lookupOf(es256.vk), OPTIONS), 'alg_forbidden');
      expectRefused(
        await validateToken(`${none}${b64u('anything')}`, lookupOf(es256.vk), OPTIONS),
        'alg_forbidden',
      );
      for (const alg of ['None', 'NONE', '', undefined, 42, ['ES256'], 'ES512', 'RS512', 'EdDSA2']) {
        const header = { alg, kid: es256.kid };
        expectRefused(
          await validateToken(forge(header, claims(), null), lookupOf(es256.vk), OPTIONS),
          'alg_forbidden',
        );
      }
    });

    it('alg_forbidden: HS256 signed with the public key bytes as the HMAC secret', async () => {
      for (const key of [rs256, es256]) {
        const pem = key.publicKey.export({ format: 'pem', type: 'spki' });
        const der = key.publicKey.export({ format: 'der', type: 'spki' });
        for (const secret of [pem, der, JSON.stringify(key.publicJwk)]) {
          const token = forge({ alg: 'HS256', kid: key.kid }, claims(), Buffer.from(secret));
          expectRefused(await validateToken(token, lookupOf(key.vk), OPTIONS), 'alg_forbidden');
        }
      }
      // And the other HMAC sizes.
      const secret = Buffer.from(rs256.publicKey.export({ format: 'pem', type: 'spki' }));
      for (const alg of ['HS384', 'HS512']) {
        const h = b64u(JSON.stringify({ alg, kid: rs256.kid }));
        const p = b64u(JSON.stringify(claims()));
        const mac = createHmac(alg === 'HS384' ? 'sha384' : 'sha512', secret)
          .update(`${h}.${p}`)
          .digest();
        expectRefused(
          await validateToken(`${h}.${p}.${b64u(mac)}`, lookupOf(rs256.vk), OPTIONS),
          'alg_forbidden',
        );
      }
    });

    it('header_forbidden: embedded jwk, jku, x5u, x5c, x5t, x5t#S256', async () => {
      const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const attackerJwk = attacker.publicKey.export({ format: 'jwk' });
      const members: Record<string, unknown> = {
        jwk: attackerJwk,
        jku: 'https://attacker.example/jwks.json',
        x5u: 'https://attacker.example/cert.pem',
        x5c: ['MIIB'],
        x5t: 'abc',
        'x5t#S256': 'abc',
      };
      for (const [member, value] of Object.entries(members)) {
        // Signed by the legitimate key, so only the header member can be the reason.
        const token = tokenFor(es256, {}, { [member]: value });
        expectRefused(await validateToken(token, lookupOf(es256.vk), OPTIONS), 'header_forbidden');
        // Signed by the attacker's key that the header offers.
        const self = forge({ alg: 'ES256', kid: es256.kid, [member]: value }, claims(), attacker.privateKey);
        expectRefused(await validateToken(self, lookupOf(es256.vk), OPTIONS), 'header_forbidden');
      }
    });

    it('crit_unsupported: any crit, even naming a known member or empty', async () => {
      for (const crit of [['exp'], ['b64'], [], 'x']) {
        const token = tokenFor(es256, {}, { crit, exp: NOW_S + 60, b64: false });
        expectRefused(await validateToken(token, lookupOf(es256.vk), OPTIONS), 'crit_unsupported');
      }
    });

    it('kid_missing: absent, empty or not a string', async () => {
      for (const kid of [undefined, '', 42, null, [es256.kid]]) {
        const header: Record<string, unknown> = { alg: 'ES256' };
        if (kid !== undefined) header.kid = kid;
        const token = forge(header, claims(), es256.privateKey);
        expectRefused(await validateToken(token, lookupOf(es256.vk), OPTIONS), 'kid_missing');
      }
    });
  });

  describe('key lookup and key state', () => {
    it('kid_unknown: a kid the scope does not have', async () => {
      const stranger = makeKey('ES256', {}, 2);
      expectRefused(await validateToken(tokenFor(stranger), lookupOf(es256.vk), OPTIONS), 'kid_unknown');
    });

    it('kid_ambiguous: two keys with the kid', async () => {
      const twin = makeKey('ES256', {}, 1, es256.kid);
      expectRefused(
        await validateToken(tokenFor(es256), lookupOf(es256.vk, twin.vk), OPTIONS),
        'kid_ambiguous',
      );
    });

    it('jwks_unavailable: a key lookup that throws is a result, not an exception', async () => {
      const result = await validateToken(
        tokenFor(es256),
        () => {
          throw new Error('store down');
        },
        OPTIONS,
      );
      expectRefused(result, 'jwks_unavailable');
    });

    it('key_pending: a published key that is not active yet', async () => {
      const key = makeKey('ES256', { activateAt: new Date(NOW.getTime() + 3600_000) });
      expectRefused(await validateToken(tokenFor(key), lookupOf(key.vk), OPTIONS), 'key_pending');
    });

    it('a key activating within the clock skew is not pending: the signer clock may be ahead, and nbf is rounded up', async () => {
      const skew = DEFAULT_CLOCK_SKEW_SECONDS; // OPTIONS leaves the default
      // Activation 0.4 s from now (published nbf rounds it up): the signer has started with it.
      const soon = makeKey('ES256', { activateAt: new Date(NOW.getTime() + 400) });
      const t = tokenFor(soon, { iat: Math.floor(NOW.getTime() / 1000) });
      const r = await validateToken(t, lookupOf(soon.vk), OPTIONS);
      assert.ok(r.valid, JSON.stringify(r));
      // Just beyond the skew it is still refused as pending.
      const later = makeKey('ES256', { activateAt: new Date(NOW.getTime() + skew * 1000 + 1000) });
      expectRefused(await validateToken(tokenFor(later), lookupOf(later.vk), OPTIONS), 'key_pending');
    });

    it('key_revoked: a revoked key, whatever the token says', async () => {
      const key = makeKey('ES256', { revokedAt: new Date(NOW.getTime() - 1000) });
      expectRefused(await validateToken(tokenFor(key), lookupOf(key.vk), OPTIONS), 'key_revoked');
    });

    it('key_expired: an expired key with a token whose exp is in the future', async () => {
      const key = makeKey('ES256', {
        activateAt: new Date(NOW.getTime() - 30 * DAY_MS),
        retireAt: new Date(NOW.getTime() - 20 * DAY_MS),
        expiresAt: new Date(NOW.getTime() - 1000),
      });
      const token = tokenFor(key, { iat: NOW_S - 25 * 86400, nbf: NOW_S - 25 * 86400, exp: NOW_S + 3600 });
      expectRefused(await validateToken(token, lookupOf(key.vk), OPTIONS), 'key_expired');
    });

    it('alg_mismatch: PS256 with an RS256 key (same RSA private key), ES384 header on an ES256 key', async () => {
      const ps = forge({ alg: 'PS256', kid: rs256.kid }, claims(), rs256.privateKey);
      expectRefused(await validateToken(ps, lookupOf(rs256.vk), OPTIONS), 'alg_mismatch');
      const other = makeKey('ES384');
      const es384 = forge({ alg: 'ES384', kid: es256.kid }, claims(), other.privateKey);
      expectRefused(await validateToken(es384, lookupOf(es256.vk), OPTIONS), 'alg_mismatch');
      const rs = forge({ alg: 'RS256', kid: es256.kid }, claims(), rs256.privateKey);
      expectRefused(await validateToken(rs, lookupOf(es256.vk), OPTIONS), 'alg_mismatch');
    });
  });

  describe('signature', () => {
    it('signature_invalid: changed claims, another key under the same kid, empty or truncated signature', async () => {
      const token = tokenFor(es256);
      const [h, , s] = token.split('.');
      const forgedPayload = b64u(JSON.stringify(claims({ sub: 'admin' })));
      expectRefused(
        await validateToken(`${h}.${forgedPayload}.${s}`, lookupOf(es256.vk), OPTIONS),
        'signature_invalid',
      );
      const impostor = makeKey('ES256', {}, 3);
      const stolenKid = forge({ alg: 'ES256', kid: es256.kid }, claims(), impostor.privateKey);
      expectRefused(await validateToken(stolenKid, lookupOf(es256.vk), OPTIONS), 'signature_invalid');
      const [h2, p2] = token.split('.');
      expectRefused(await validateToken(`${h2}.${p2}.`, lookupOf(es256.vk), OPTIONS), 'signature_invalid');
      expectRefused(
        await validateToken(`${h2}.${p2}.${(s as string).slice(0, 40)}`, lookupOf(es256.vk), OPTIONS),
        'signature_invalid',
      );
    });

    it('signature_invalid: an ECDSA signature in DER instead of raw r||s', async () => {
      const h = b64u(JSON.stringify({ alg: 'ES256', kid: es256.kid }));
      const p = b64u(JSON.stringify(claims()));
      const der = sign('sha256', Buffer.from(`${h}.${p}`), es256.privateKey);
      expectRefused(
        await validateToken(`${h}.${p}.${b64u(der)}`, lookupOf(es256.vk), OPTIONS),
        'signature_invalid',
      );
    });

    it('signature_invalid: PS256 with a salt length other than 32', async () => {
      const key = makeKey('PS256');
      const { constants } = await import('node:crypto');
      const h = b64u(JSON.stringify({ alg: 'PS256', kid: key.kid }));
      const p = b64u(JSON.stringify(claims()));
      for (const saltLength of [0, 64]) {
        const sig = sign('sha256', Buffer.from(`${h}.${p}`), {
          key: key.privateKey,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength,
        });
        expectRefused(
          await validateToken(`${h}.${p}.${b64u(sig)}`, lookupOf(key.vk), OPTIONS),
          'signature_invalid',
        );
      }
    });
  });

  describe('claims', () => {
    it('claims_malformed: registered claims of the wrong type', async () => {
      for (const bad of [
        { exp: String(NOW_S + 600) },
        { iat: null },
        { nbf: [NOW_S] },
        { aud: 42 },
        { aud: [AUDIENCE, 42] },
        { iss: { url: ISSUER } },
        { sub: 7 },
        { jti: false },
      ]) {
        expectRefused(
          await validateToken(tokenFor(es256, bad), lookupOf(es256.vk), OPTIONS),
          'claims_malformed',
        );
      }
    });

    it('issuer_mismatch: missing, different, or not exactly equal', async () => {
      for (const iss of [undefined, OTHER_ISSUER, `${ISSUER}/`, ISSUER.toUpperCase(), `${ISSUER} `]) {
        expectRefused(
          await validateToken(tokenFor(es256, { iss }), lookupOf(es256.vk), OPTIONS),
          'issuer_mismatch',
        );
      }
    });

    it('audience_missing and audience_mismatch', async () => {
      expectRefused(
        await validateToken(tokenFor(es256, { aud: undefined }), lookupOf(es256.vk), OPTIONS),
        'audience_missing',
      );
      for (const aud of ['other-api', ['other-api'], [], `${AUDIENCE}x`]) {
        expectRefused(
          await validateToken(tokenFor(es256, { aud }), lookupOf(es256.vk), OPTIONS),
          'audience_mismatch',
        );
      }
    });

    it('exp_missing, token_expired', async () => {
      expectRefused(
        await validateToken(tokenFor(es256, { exp: undefined }), lookupOf(es256.vk), OPTIONS),
        'exp_missing',
      );
      expectRefused(
        await validateToken(tokenFor(es256, { exp: NOW_S - 31 }), lookupOf(es256.vk), OPTIONS),
        'token_expired',
      );
    });

    it('token_not_yet_valid: nbf beyond the skew', async () => {
      expectRefused(
        await validateToken(tokenFor(es256, { nbf: NOW_S + 120 }), lookupOf(es256.vk), OPTIONS),
        'token_not_yet_valid',
      );
      expectValid(await validateToken(tokenFor(es256, { nbf: NOW_S + 20 }), lookupOf(es256.vk), OPTIONS));
    });

    it('iat_missing, iat_in_future', async () => {
      expectRefused(
        await validateToken(tokenFor(es256, { iat: undefined }), lookupOf(es256.vk), OPTIONS),
        'iat_missing',
      );
      expectRefused(
        await validateToken(
          tokenFor(es256, { iat: NOW_S + 3600, nbf: undefined }),
          lookupOf(es256.vk),
          OPTIONS,
        ),
        'iat_in_future',
      );
    });

    it('iat_outside_key_window: a retired key minting a fresh token (the leaked-key case)', async () => {
      const retired = makeKey('ES256', {
        activateAt: new Date(NOW.getTime() - 10 * DAY_MS),
        retireAt: new Date(NOW.getTime() - DAY_MS),
      });
      // Everything about the token is fresh and right, except that its key had stopped signing.
      expectRefused(
        await validateToken(tokenFor(retired), lookupOf(retired.vk), OPTIONS),
        'iat_outside_key_window',
      );
    });

    it('iat_outside_key_window: a token backdated to before its key was active', async () => {
      const young = makeKey('ES256', { activateAt: new Date(NOW.getTime() - 3600_000) });
      const token = tokenFor(young, { iat: NOW_S - 7200, nbf: undefined });
      expectRefused(await validateToken(token, lookupOf(young.vk), OPTIONS), 'iat_outside_key_window');
    });

    it('exp_beyond_key_expiry: a token that would outlive its key', async () => {
      const key = makeKey('ES256', { expiresAt: new Date(NOW.getTime() + 3600_000) });
      expectRefused(
        await validateToken(tokenFor(key, { exp: NOW_S + 7200 }), lookupOf(key.vk), OPTIONS),
        'exp_beyond_key_expiry',
      );
      expectValid(await validateToken(tokenFor(key, { exp: NOW_S + 3600 }), lookupOf(key.vk), OPTIONS));
    });

    describe("token_lifetime_exceeded: exp - iat beyond the scope's maxTokenTtl + skew", () => {
      // A scope whose signer caps tokens at 5 minutes; the key itself lives for weeks.
      let key: TestKey;
      const iat = NOW_S - 60;
      const living = (seconds: number, extra: Record<string, unknown> = {}) =>
        tokenFor(key, { iat, nbf: iat, exp: iat + seconds, ...extra });
      before(() => {
        key = makeKey('ES256', { maxTokenTtlSeconds: 300 });
      });

      it('a token minted with the real key to live until the key expires (the leaked-key case)', async () => {
        const untilKeyExpiry = Math.floor(key.vk.expiresAt.getTime() / 1000) - iat;
        assert.ok(untilKeyExpiry > 19 * 86400);
        expectRefused(
          await validateToken(living(untilKeyExpiry), lookupOf(key.vk), OPTIONS),
          'token_lifetime_exceeded',
        );
        // A day, an hour: anything the signer would never have made.
        for (const seconds of [86400, 3600, 331]) {
          expectRefused(
            await validateToken(living(seconds), lookupOf(key.vk), OPTIONS),
            'token_lifetime_exceeded',
          );
        }
      });

      it('accepts exactly maxTokenTtl + skew, and refuses one second (or a fraction) more', async () => {
        expectValid(await validateToken(living(300), lookupOf(key.vk), OPTIONS));
        expectValid(await validateToken(living(330), lookupOf(key.vk), OPTIONS));
        expectRefused(await validateToken(living(331), lookupOf(key.vk), OPTIONS), 'token_lifetime_exceeded');
        expectRefused(
          await validateToken(living(330.5), lookupOf(key.vk), OPTIONS),
          'token_lifetime_exceeded',
        );
        // With no skew the bound is maxTokenTtl itself; with the most skew, 300 + 300.
        const noSkew = { ...OPTIONS, clockSkewSeconds: 0 };
        expectValid(await validateToken(living(300), lookupOf(key.vk), noSkew));
        expectRefused(await validateToken(living(301), lookupOf(key.vk), noSkew), 'token_lifetime_exceeded');
        const maxSkew = { ...OPTIONS, clockSkewSeconds: 300 };
        expectValid(await validateToken(living(600), lookupOf(key.vk), maxSkew));
        expectRefused(await validateToken(living(601), lookupOf(key.vk), maxSkew), 'token_lifetime_exceeded');
      });

      it('measures from iat, whatever nbf says: a late nbf does not shorten the lifetime', async () => {
        // Valid only from 50 s after iat, yet it lives exp - iat = 400 s: the signer never made it.
        const token = living(400, { nbf: iat + 50 });
        expectRefused(await validateToken(token, lookupOf(key.vk), OPTIONS), 'token_lifetime_exceeded');
      });

      it('comes after the key checks: a token that also outlives its key is exp_beyond_key_expiry', async () => {
        const short = makeKey('ES256', {
          expiresAt: new Date(NOW.getTime() + 3600_000),
          maxTokenTtlSeconds: 300,
        });
        expectRefused(
          await validateToken(tokenFor(short, { exp: NOW_S + 7200 }), lookupOf(short.vk), OPTIONS),
          'exp_beyond_key_expiry',
        );
      });

      it('fails closed: a key without a valid bound verifies no token at all', async () => {
        const good = living(60);
        expectValid(await validateToken(good, lookupOf(key.vk), OPTIONS));
        for (const bad of [
          undefined,
          null,
          0,
          -300,
          300.5,
          NaN,
          Infinity,
          ABSOLUTE_MAX_KEY_LIFETIME_SECONDS + 1,
          '300',
          300n,
        ]) {
          const unbounded = { ...key.vk, maxTokenTtlSeconds: bad as number };
          expectRefused(await validateToken(good, lookupOf(unbounded), OPTIONS), 'token_lifetime_exceeded');
        }
      });
    });
  });

  describe('cross-scope (I5)', () => {
    it('a token signed by scope A is refused with scope B keys, whichever issuer it claims', async () => {
      const scopeA = makeKey('ES256', {}, 4);
      const scopeB = makeKey('ES256', {}, 5);
      const optionsB = { ...OPTIONS, issuer: OTHER_ISSUER };
      for (const iss of [ISSUER, OTHER_ISSUER]) {
        const token = tokenFor(scopeA, { iss });
        expectRefused(await validateToken(token, lookupOf(scopeB.vk), optionsB), 'kid_unknown');
        expectRefused(await validateToken(token, lookupOf(scopeB.vk), OPTIONS), 'kid_unknown');
      }
      // Claiming a B kid does not help: the signature is A's.
      const wearingBKid = forge(
        { alg: 'ES256', kid: scopeB.kid },
        claims({ iss: OTHER_ISSUER }),
        scopeA.privateKey,
      );
      expectRefused(await validateToken(wearingBKid, lookupOf(scopeB.vk), optionsB), 'signature_invalid');
      // And A's own token with A's keys but B's expected issuer is refused on iss.
      expectRefused(await validateToken(tokenFor(scopeA), lookupOf(scopeA.vk), optionsB), 'issuer_mismatch');
    });
  });

  describe('robustness', () => {
    it('never rejects, whatever the token string', async () => {
      await fc.assert(
        fc.asyncProperty(fc.string({ maxLength: 400 }), async (s) => {
          const r = await validateToken(s, lookupOf(es256.vk), OPTIONS);
          return r.valid === false && (REASON_CODES as readonly string[]).includes(r.reason);
        }),
        { numRuns: 300 },
      );
    });

    it('never accepts a token with one character changed', async () => {
      const token = tokenFor(es256);
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/';
      await fc.assert(
        fc.asyncProperty(fc.nat({ max: token.length - 1 }), fc.constantFrom(...alphabet), async (i, c) => {
          fc.pre(token[i] !== c);
          const mutated = token.slice(0, i) + c + token.slice(i + 1);
          const r = await validateToken(mutated, lookupOf(es256.vk), OPTIONS);
          return r.valid === false;
        }),
        { numRuns: 300 },
      );
    });

    it('rejects invalid options with a TypeError or RangeError', async () => {
      const token = tokenFor(es256);
      await assert.rejects(validateToken(token, lookupOf(es256.vk), { ...OPTIONS, issuer: '' }), TypeError);
      await assert.rejects(validateToken(token, lookupOf(es256.vk), { ...OPTIONS, audience: '' }), TypeError);
      await assert.rejects(
        validateToken(token, lookupOf(es256.vk), { ...OPTIONS, now: new Date(NaN) }),
        TypeError,
      );
      await assert.rejects(
        validateToken(token, lookupOf(es256.vk), { ...OPTIONS, clockSkewSeconds: 3600 }),
        RangeError,
      );
    });
  });

  describe('explicit typing (the typ option)', () => {
    const AT = { ...OPTIONS, typ: 'at+jwt' };

    it('typ_mismatch: an authentic token of another type (JWT, an ID token) is not an access token', async () => {
      for (const typ of ['JWT', 'application/jwt', 'id_token+jwt', 'at+jwt2', 'application/at+jwt/x']) {
        const token = tokenFor(es256, {}, { typ });
        // The same token is valid for a verifier that does not ask for a type...
        expectValid(await validateToken(token, lookupOf(es256.vk), OPTIONS));
        // ...and refused by one that expects access tokens.
        expectRefused(await validateToken(token, lookupOf(es256.vk), AT), 'typ_mismatch');
      }
    });

    it('typ_mismatch: no typ, or a typ that is not a string, when one is expected', async () => {
      const none = tokenFor(es256, {}, { typ: undefined });
      assert.ok(!Buffer.from(none.split('.')[0]!, 'base64url').toString().includes('typ'));
      expectRefused(await validateToken(none, lookupOf(es256.vk), AT), 'typ_mismatch');
      for (const typ of [null, 1, ['at+jwt'], { type: 'at+jwt' }]) {
        const token = tokenFor(es256, {}, { typ });
        expectRefused(await validateToken(token, lookupOf(es256.vk), AT), 'typ_mismatch');
      }
    });

    it('accepts the expected type in any case, with or without application/ (RFC 7515 4.1.9)', async () => {
      for (const typ of ['at+jwt', 'AT+JWT', 'application/at+jwt', 'Application/At+Jwt']) {
        const token = tokenFor(es256, {}, { typ });
        expectValid(await validateToken(token, lookupOf(es256.vk), AT));
        expectValid(
          await validateToken(token, lookupOf(es256.vk), { ...OPTIONS, typ: 'application/AT+jwt' }),
        );
      }
    });

    it('typ_mismatch: a header typ that only Unicode case folding equates (the Kelvin sign for k)', async () => {
      const token = tokenFor(es256, {}, { typ: '\u212A+jwt' });
      assert.equal('\u212A+jwt'.toLowerCase(), 'k+jwt'); // what a naive comparison would equate
      expectRefused(
        await validateToken(token, lookupOf(es256.vk), { ...OPTIONS, typ: 'k+jwt' }),
        'typ_mismatch',
      );
    });

    it('checks the signature first: a forged token with the right typ is signature_invalid', async () => {
      const other = makeKey('ES256', {}, 1); // slot 1: another key pair
      const forged = forge({ alg: 'ES256', kid: es256.kid, typ: 'at+jwt' }, claims(), other.privateKey);
      expectRefused(await validateToken(forged, lookupOf(es256.vk), AT), 'signature_invalid');
      const forgedWrongTyp = forge({ alg: 'ES256', kid: es256.kid, typ: 'JWT' }, claims(), other.privateKey);
      expectRefused(await validateToken(forgedWrongTyp, lookupOf(es256.vk), AT), 'signature_invalid');
    });

    it('rejects an expected typ that is not a media type with a TypeError', async () => {
      const token = tokenFor(es256, {}, { typ: 'at+jwt' });
      for (const typ of [
        '',
        ' at+jwt',
        'at+jwt; charset=x',
        'x'.repeat(65),
        '/',
        'application/',
        'a/b/c',
        1 as unknown as string,
      ]) {
        await assert.rejects(validateToken(token, lookupOf(es256.vk), { ...OPTIONS, typ }), TypeError);
      }
    });
  });

  // Mocha runs a suite's own tests before its child suites: this one must be a later suite.
  describe('coverage', () => {
    it('has provoked every reason code with an attacking token', () => {
      const untested = REASON_CODES.filter((code) => !provoked.has(code));
      assert.deepEqual(untested, []);
    });
  });
});
