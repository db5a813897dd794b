import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { canonicalJson } from '../../../src/policy/canonical-json';

describe('canonicalJson', () => {
  it('sorts keys at every depth and writes no whitespace', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, { z: true, y: null }], c: 'x' } }),
      '{"a":{"c":"x","d":[3,{"y":null,"z":true}]},"b":1}',
    );
  });

  it('orders keys by UTF-16 code units (RFC 8785), not by locale', () => {
    assert.equal(canonicalJson({ é: 1, z: 2, Z: 3, '10': 4, '9': 5 }), '{"10":4,"9":5,"Z":3,"z":2,"é":1}');
  });

  it('drops undefined members like JSON.stringify', () => {
    assert.equal(canonicalJson({ a: undefined, b: 2 }), '{"b":2}');
  });

  it('refuses what would not round-trip: non-finite numbers, Dates, class instances, functions', () => {
    assert.throws(() => canonicalJson({ x: NaN }), TypeError);
    assert.throws(() => canonicalJson({ x: Infinity }), TypeError);
    assert.throws(() => canonicalJson({ at: new Date(0) }), TypeError);
    assert.throws(() => canonicalJson({ m: new Map() }), TypeError);
    assert.throws(() => canonicalJson({ f: () => 1 }), TypeError);
    assert.throws(() => canonicalJson(BigInt(1)), TypeError);
  });

  it('is stable across a JSON round trip and independent of insertion order', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const once = canonicalJson(v);
        assert.equal(canonicalJson(JSON.parse(once)), once);
        if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
          const reversed = Object.fromEntries(Object.entries(v).reverse());
          assert.equal(canonicalJson(reversed), once);
        }
      }),
    );
  });
});
