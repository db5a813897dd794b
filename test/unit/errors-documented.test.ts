/**
 * Errors are API (CONVENTIONS example 6): every error code is documented in docs/errors.md
 * with the HTTP status and CLI exit code the code actually maps to, every verification reason
 * code is documented, and the docs name no code that does not exist.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT_CODE } from '../../src/cli/exit-codes';
import { HTTP_STATUS } from '../../src/http/error-status';
import { ERROR_CODES, type ErrorCode } from '../../src/policy/errors';
import { REASON_CODES } from '../../packages/verify/src/reasons';

const DOC = readFileSync(join(__dirname, '..', '..', 'docs', 'errors.md'), 'utf8');

/** Table rows whose first cell is a `code`, as arrays of trimmed cells. */
function rows(section: string): Map<string, string[]> {
  const start = DOC.indexOf(`## ${section}`);
  assert.ok(start >= 0, `docs/errors.md has no "## ${section}" section`);
  const end = DOC.indexOf('\n## ', start + 1);
  const text = DOC.slice(start, end < 0 ? undefined : end);
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^\|\s*`([^`]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (!m) continue;
    assert.ok(!out.has(m[1]!), `${m[1]} is documented twice in "${section}"`);
    out.set(
      m[1]!,
      m[2]!.split('|').map((c) => c.trim()),
    );
  }
  return out;
}

describe('docs/errors.md', () => {
  const codes = rows('Error codes');
  const reasons = rows('Verification reason codes');

  it('documents every error code with its HTTP status and CLI exit code', () => {
    const problems: string[] = [];
    for (const code of ERROR_CODES) {
      const row = codes.get(code);
      if (!row) {
        problems.push(`${code}: missing`);
        continue;
      }
      const [status, exit, meaning] = row;
      if (Number(status) !== HTTP_STATUS[code])
        problems.push(`${code}: HTTP ${status}, code says ${HTTP_STATUS[code]}`);
      if (Number(exit) !== EXIT_CODE[code])
        problems.push(`${code}: exit ${exit}, code says ${EXIT_CODE[code]}`);
      if (!meaning || meaning.length < 10) problems.push(`${code}: no meaning given`);
    }
    assert.deepEqual(problems, []);
  });

  it('documents no error code that does not exist', () => {
    const unknown = [...codes.keys()].filter(
      (c) => !(ERROR_CODES as readonly string[]).includes(c as ErrorCode),
    );
    assert.deepEqual(unknown, []);
  });

  it('documents every verification reason code, and no other', () => {
    const missing = REASON_CODES.filter((r) => !reasons.get(r)?.[0]);
    const unknown = [...reasons.keys()].filter((r) => !(REASON_CODES as readonly string[]).includes(r));
    assert.deepEqual({ missing, unknown }, { missing: [], unknown: [] });
  });
});
