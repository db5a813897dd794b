import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..', '..');

/**
 * The daemon checks its seals with its own copy of the JWS signature primitive, because
 * @keywarden/verify exports complete token validation only (I6). The two copies must not drift:
 * their code (below the imports and the daemon's comment on why it is a copy) is identical.
 */
describe('JWS signature primitive: the daemon copy and the package copy', () => {
  it('are the same code', () => {
    const body = (path: string) => {
      const text = readFileSync(join(ROOT, path), 'utf8');
      return text.slice(text.indexOf('export function verifyJwsSignature'));
    };
    assert.equal(body('src/lifecycle/jws-signature.ts'), body('packages/verify/src/jws-signature.ts'));
  });
});
