/**
 * `hsm check` finding kinds are API (CONVENTIONS: vocabulary is catalogued): every kind is
 * documented in docs/hsm-vendors.md with the meaning `hsm check --help` prints, and the docs name
 * no kind that does not exist.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HSM_FINDING_KINDS } from '../../../src/policy/hsm-findings';

const DOC = readFileSync(join(__dirname, '..', '..', '..', 'docs', 'hsm-vendors.md'), 'utf8');
const HEADING = '## `hsm check` findings';

function documented(): Map<string, string[]> {
  const start = DOC.indexOf(HEADING);
  assert.ok(start >= 0, `docs/hsm-vendors.md has no "${HEADING}" section`);
  const end = DOC.indexOf('\n## ', start + 1);
  const out = new Map<string, string[]>();
  for (const line of DOC.slice(start, end < 0 ? undefined : end).split('\n')) {
    const m = /^\|\s*`([^`]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (!m) continue;
    assert.ok(!out.has(m[1]!), `${m[1]} is documented twice`);
    out.set(
      m[1]!,
      m[2]!.split('|').map((c) => c.trim()),
    );
  }
  return out;
}

describe('docs/hsm-vendors.md: hsm check findings', () => {
  const rows = documented();

  it('documents every finding kind with the meaning --help prints, and what to do about it', () => {
    const problems: string[] = [];
    for (const [kind, meaning] of Object.entries(HSM_FINDING_KINDS)) {
      const row = rows.get(kind);
      if (!row) problems.push(`${kind}: missing`);
      else if (row[0] !== meaning) problems.push(`${kind}: docs say "${row[0]}", code says "${meaning}"`);
      else if (!row[1] || row[1].length < 10) problems.push(`${kind}: no advice given`);
    }
    assert.deepEqual(problems, []);
  });

  it('documents no finding kind that does not exist', () => {
    assert.deepEqual(
      [...rows.keys()].filter((k) => !Object.hasOwn(HSM_FINDING_KINDS, k)),
      [],
    );
  });
});
