import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { findDuplicateMember, parseJsonObject } from '../../../packages/verify/src/strict-json';

describe('parseJsonObject', () => {
  it('parses objects without duplicates', () => {
    const r = parseJsonObject('{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}');
    assert.ok(r.ok);
    assert.deepEqual(r.value, { a: 1, b: { a: 2 }, c: [{ a: 3 }, { a: 4 }] });
  });

  it('finds duplicates at the top level, nested, inside arrays, and under escaped spellings', () => {
    assert.equal(findDuplicateMember('{"kid":"a","kid":"b"}'), 'kid');
    assert.equal(findDuplicateMember('{"x":{"a":1, "a" :2}}'), 'a');
    assert.equal(findDuplicateMember('[{"a":1},{"b":1,"b":2}]'), 'b');
    assert.equal(findDuplicateMember('{"kid":"a","\\u006bid":"b"}'), 'kid');
    assert.equal(findDuplicateMember('{"a\\"b":1,"a\\"b":2}'), 'a"b');
    const r = parseJsonObject('{ "alg" : "ES256" , "alg":"none" }');
    assert.deepEqual(r, { ok: false, problem: 'duplicate_member', member: 'alg' });
  });

  it('does not mistake strings for structure', () => {
    assert.equal(
      findDuplicateMember('{"a":"{\\"a\\":1,","b":"a","c":["a","a"],"d":"\\\\","e":":"}'),
      undefined,
    );
    assert.equal(findDuplicateMember('{"a":{},"b":{"a":[]},"c":[[{"a":1}]]}'), undefined);
  });

  it('refuses non-JSON and non-objects', () => {
    assert.deepEqual(parseJsonObject('{'), { ok: false, problem: 'not_json' });
    assert.deepEqual(parseJsonObject('[]'), { ok: false, problem: 'not_object' });
    assert.deepEqual(parseJsonObject('null'), { ok: false, problem: 'not_object' });
  });

  it('agrees with a reference count on random objects', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 }),
        (obj) => {
          const text = JSON.stringify(obj);
          assert.equal(findDuplicateMember(text), undefined);
          const keys = Object.keys(obj);
          if (keys.length === 0) return;
          // Append a copy of the first member: now there must be a duplicate.
          const k = keys[0]!;
          const dup = `${text.slice(0, -1)},${JSON.stringify(k)}:0}`;
          assert.equal(findDuplicateMember(dup), k);
        },
      ),
      { numRuns: 300 },
    );
  });
});
