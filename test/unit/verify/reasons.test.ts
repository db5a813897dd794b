import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REASON_CODES, REASON_DESCRIPTIONS, isReasonCode } from '../../../packages/verify/src/reasons';

describe('reason codes', () => {
  it('are the documented, stable list', () => {
    assert.deepEqual(
      [...REASON_CODES],
      [
        'token_malformed',
        'token_too_large',
        'duplicate_member',
        'alg_forbidden',
        'header_forbidden',
        'crit_unsupported',
        'kid_missing',
        'kid_unknown',
        'kid_ambiguous',
        'alg_mismatch',
        'key_pending',
        'key_revoked',
        'key_expired',
        'signature_invalid',
        'claims_malformed',
        'issuer_mismatch',
        'audience_missing',
        'audience_mismatch',
        'exp_missing',
        'token_expired',
        'token_not_yet_valid',
        'iat_missing',
        'iat_in_future',
        'iat_outside_key_window',
        'exp_beyond_key_expiry',
        'jwks_unavailable',
        'typ_mismatch',
        'token_lifetime_exceeded',
      ],
    );
  });

  it('each have exactly one one-line description', () => {
    assert.deepEqual(Object.keys(REASON_DESCRIPTIONS).sort(), [...REASON_CODES].sort());
    for (const code of REASON_CODES) {
      const d = REASON_DESCRIPTIONS[code];
      assert.ok(d.length > 10 && !d.includes('\n'), code);
    }
    assert.equal(isReasonCode('kid_unknown'), true);
    assert.equal(isReasonCode('toString'), false);
  });

  it('are all in the reason table of docs/verify-library.md, with their descriptions', () => {
    const doc = readFileSync(join(__dirname, '../../../docs/verify-library.md'), 'utf8');
    const escape = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    for (const code of REASON_CODES) {
      const row = new RegExp(
        `^\\|\\s*\`${code}\`\\s*\\|\\s*${escape(REASON_DESCRIPTIONS[code])}\\s*\\|$`,
        'm',
      );
      assert.match(doc, row, code);
    }
  });
});
