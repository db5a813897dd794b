import assert from 'node:assert/strict';
import { jwksCacheControl, jwksMaxAgeSeconds, type BuiltJwks } from '../../../src/lifecycle/build-jwks';
import type { ScopeConfig } from '../../../src/policy/scope';
import { at, policy } from '../policy/rotation-fixture';

const scope = { name: 's', policy: { ...policy, jwksMaxAgeSeconds: 300 } } as unknown as ScopeConfig;
const jwks = (nextChangeAt: Date | null): BuiltJwks => ({
  body: '{"keys":[]}',
  bytes: Buffer.from('{"keys":[]}'),
  etag: '"e"',
  kids: [],
  nextChangeAt,
});

describe('JWKS Cache-Control', () => {
  it('jitters max-age down by at most 10% of the scope maximum, never above it', () => {
    assert.equal(
      jwksMaxAgeSeconds(scope, jwks(null), at(0), () => 0),
      300,
    );
    assert.equal(
      jwksMaxAgeSeconds(scope, jwks(null), at(0), () => 0.999999),
      270,
    );
    for (let i = 0; i < 200; i++) {
      const v = jwksMaxAgeSeconds(scope, jwks(null), at(0));
      assert.ok(Number.isInteger(v) && v >= 270 && v <= 300, `max-age ${v}`);
    }
  });

  it('never lets a cache outlive the next key state change, and never goes negative', () => {
    // A key changes state in 42.9 s: a relying party must refetch by then.
    assert.equal(
      jwksMaxAgeSeconds(scope, jwks(at(42.9)), at(0), () => 0),
      42,
    );
    assert.ok(jwksMaxAgeSeconds(scope, jwks(at(42.9)), at(0), () => 0.5) <= 42);
    // Served late (the document is due for a rebuild): 0, not a negative max-age.
    assert.equal(
      jwksMaxAgeSeconds(scope, jwks(at(-5)), at(0), () => 0),
      0,
    );
  });

  it('gives each max-age its own header value, also when it comes from the cache', () => {
    assert.equal(jwksCacheControl(287), 'public, max-age=287');
    assert.equal(jwksCacheControl(0), 'public, max-age=0');
    const a = jwksCacheControl(123);
    assert.equal(jwksCacheControl(123), a);
    assert.notEqual(jwksCacheControl(124), a);
  });
});
