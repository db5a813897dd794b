import { strict as assert } from 'node:assert';
import { REDACTED, scrubAuditData } from '../../../src/audit/scrub';

const jwt =
  'eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsImF1ZCI6ImFwaSJ9.MEUCIQDd3mYkR6lqY0kz8pV7w1aZ0b8sJk';

describe('scrubAuditData', () => {
  it('redacts values under secret-sounding keys at any depth', () => {
    const out = scrubAuditData({
      pin: '1234',
      nested: { clientSecret: 's3cret', password: 'pw', Authorization: 'Bearer x', keep: 'ok' },
      list: [{ token: 't' }, { secret: 'x' }],
      jwk: { kty: 'EC', x: 'xx', y: 'yy', d: 'private!' },
    });
    assert.equal(out.pin, REDACTED);
    assert.deepEqual(out.nested, {
      clientSecret: REDACTED,
      password: REDACTED,
      Authorization: REDACTED,
      keep: 'ok',
    });
    assert.deepEqual(out.list, [{ token: REDACTED }, { secret: REDACTED }]);
    assert.deepEqual(out.jwk, { kty: 'EC', x: 'xx', y: 'yy', d: REDACTED });
    assert.ok(!JSON.stringify(out).includes('s3cret') && !JSON.stringify(out).includes('private!'));
  });

  it('removes anything shaped like a compact JWS from strings, even inside messages', () => {
    const out = scrubAuditData({ error: `token ${jwt} was refused`, jti: 'abc-123' });
    assert.equal(out.error, 'token [redacted-jws] was refused');
    assert.equal(out.jti, 'abc-123');
  });

  it('returns plain JSON: Dates as ISO strings, undefined dropped, non-objects wrapped', () => {
    assert.deepEqual(scrubAuditData({ at: new Date(0), u: undefined }), { at: '1970-01-01T00:00:00.000Z' });
    assert.deepEqual(scrubAuditData(undefined), {});
    assert.deepEqual(scrubAuditData(['a']), { value: ['a'] });
  });

  it('bounds depth and string length', () => {
    let deep: Record<string, unknown> = { v: 1 };
    for (let i = 0; i < 20; i++) deep = { deep };
    assert.ok(JSON.stringify(scrubAuditData(deep)).includes('[too deep]'));
    const long = scrubAuditData({ s: 'x'.repeat(10_000) }).s as string;
    assert.ok(long.length <= 2001);
  });
});
