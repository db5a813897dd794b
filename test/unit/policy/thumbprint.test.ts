import { strict as assert } from 'node:assert';
import { generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { thumbprint, thumbprintNow } from '../../../src/policy/thumbprint';
import type { PublicJwk } from '../../../src/policy/key';

function publicJwk(type: 'ec' | 'rsa' | 'ed25519', options: Record<string, unknown>): PublicJwk {
  const { publicKey } = generateKeyPairSync(type as 'ec', options as { namedCurve: string });
  return publicKey.export({ format: 'jwk' }) as unknown as PublicJwk;
}

describe('thumbprint (RFC 7638)', () => {
  it("matches RFC 7638 §3.1's worked example", async () => {
    const jwk = {
      kty: 'RSA',
      n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
      e: 'AQAB',
      alg: 'RS256',
      kid: '2011-04-29',
    } as unknown as PublicJwk;
    assert.equal(await thumbprint(jwk), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });

  for (const [name, type, options] of [
    ['EC P-256', 'ec', { namedCurve: 'P-256' }],
    ['EC P-384', 'ec', { namedCurve: 'P-384' }],
    ['RSA', 'rsa', { modulusLength: 2048 }],
    ['Ed25519', 'ed25519', {}],
  ] as const) {
    it(`equals jose's calculateJwkThumbprint for ${name}, whatever other members the JWK carries`, async () => {
      for (let i = 0; i < 5; i++) {
        const jwk = { ...publicJwk(type, options), kid: 'ignored', use: 'sig' } as PublicJwk;
        assert.equal(thumbprintNow(jwk), await calculateJwkThumbprint(jwk as JWK, 'sha256'));
      }
    });
  }

  it('refuses a JWK of an unknown type or missing a required member', async () => {
    const ec = publicJwk('ec', { namedCurve: 'P-256' });
    assert.throws(
      () => thumbprintNow({ ...ec, kty: 'oct' } as unknown as PublicJwk),
      /unsupported JWK key type oct/,
    );
    const { y: _y, ...noY } = ec as unknown as Record<string, string>;
    assert.throws(() => thumbprintNow(noY as unknown as PublicJwk), /member y is missing/);
    await assert.rejects(thumbprint(noY as unknown as PublicJwk), /member y is missing/);
  });
});
