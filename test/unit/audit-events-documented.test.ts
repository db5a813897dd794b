/**
 * Audit event types are vocabulary (CONVENTIONS "Vocabulary lives in policy/ and is catalogued"):
 * every type keywarden writes is in AUDIT_EVENT_TYPES, each is documented in docs/audit.md, and the
 * docs name no type that does not exist.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_EVENT_TYPES } from '../../src/policy/audit-events';

const DOC = readFileSync(join(__dirname, '..', '..', 'docs', 'audit.md'), 'utf8');

/** First-cell codes of the "What is recorded" table. */
function documentedTypes(): string[] {
  const start = DOC.indexOf('## What is recorded');
  assert.ok(start >= 0, 'docs/audit.md has no "## What is recorded" section');
  const end = DOC.indexOf('\n## ', start + 1);
  const out: string[] = [];
  for (const line of DOC.slice(start, end < 0 ? undefined : end).split('\n')) {
    const m = /^\|\s*`([^`]+)`\s*\|/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}

describe('docs/audit.md', () => {
  const documented = documentedTypes();

  it('documents every audit event type, once', () => {
    const missing = AUDIT_EVENT_TYPES.filter((t) => !documented.includes(t));
    assert.deepEqual(missing, [], 'event types missing from docs/audit.md');
    const twice = documented.filter((t, i) => documented.indexOf(t) !== i);
    assert.deepEqual(twice, [], 'event types documented twice');
  });

  it('names no event type that does not exist', () => {
    const unknown = documented.filter((t) => !(AUDIT_EVENT_TYPES as readonly string[]).includes(t));
    assert.deepEqual(unknown, []);
  });
});
