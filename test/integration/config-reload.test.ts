/**
 * The SIGHUP reload decision on real files: a valid reloadable change is applied, an invalid file
 * or a restart-only change is refused with every problem and nothing applied, and signals during
 * a reload fold into one more reload of the file as it is then.
 */
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { parseConfigText } from '../../src/config/load-config';
import { ConfigReloader, type ReloadTarget } from '../../src/config/reloader';
import type { ConfigChanges, ConfigReloadOutcome } from '../../src/policy/config-changes';
import type { KeywardenConfig } from '../../src/policy/scope';
import { TEST_POLICY as policy } from '../helpers/config-fixtures';

const scope = (name: string, p: Record<string, string> = policy) => ({
  name,
  issuer: `https://issuer.test/${name}`,
  audiences: ['api'],
  alg: 'ES256',
  backend: 'hsm',
  policy: p,
});
const doc = (scopes: unknown[], extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    backends: {
      hsm: { type: 'pkcs11', module: '/usr/lib/softhsm.so', tokenLabel: 't', pin: { env: 'PIN' } },
    },
    scopes,
    ...extra,
  });

describe('ConfigReloader', () => {
  let dir: string;
  let file: string;
  let running: KeywardenConfig;
  let applied: { next: KeywardenConfig; changes: ConfigChanges }[];
  let outcomes: ConfigReloadOutcome[];
  let applyGate: Promise<void>;
  let target: ReloadTarget;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'keywarden-reloader-'));
    file = join(dir, 'keywarden.yaml');
    writeFileSync(file, doc([scope('a')]));
    running = parseConfigText(doc([scope('a')]), file);
    applied = [];
    outcomes = [];
    applyGate = Promise.resolve();
    target = {
      current: () => running,
      apply: async (next, changes) => {
        await applyGate;
        applied.push({ next: next.config, changes });
        running = next.config;
      },
      outcome: async (o) => {
        outcomes.push(o);
      },
    };
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const reloader = () => new ConfigReloader(file, target, pino({ level: 'silent' }));

  it('applies a valid file that adds a scope, and reports it', async () => {
    writeFileSync(file, doc([scope('a'), scope('b')]));
    await reloader().request();
    assert.equal(applied.length, 1);
    assert.deepEqual(applied[0]!.changes.scopesAdded, ['b']);
    assert.deepEqual(
      running.scopes.map((s) => s.name),
      ['a', 'b'],
    );
    assert.equal(outcomes.length, 1);
    assert.ok(outcomes[0]!.applied);
  });

  it('refuses an invalid file with every problem, applying nothing', async () => {
    const bad = { ...policy, prepublish: '1s' };
    writeFileSync(file, doc([scope('a', bad), scope('b', { ...policy, verifyGrace: '1m' })]));
    await reloader().request();
    assert.equal(applied.length, 0);
    const o = outcomes[0]!;
    assert.ok(!o.applied);
    assert.match(String(o.sha256), /^[0-9a-f]{64}$/);
    assert.equal(o.problems.length, 2, o.problems.join('\n'));
    assert.ok(o.problems.some((p) => p.includes('scope a') && p.includes('prepublish')));
    assert.ok(o.problems.some((p) => p.includes('scope b') && p.includes('verifyGrace')));
  });

  it('refuses a file it cannot read, and a restart-only change, as a whole', async () => {
    rmSync(file);
    await reloader().request();
    writeFileSync(file, doc([scope('a'), scope('b')], { server: { port: 9999 } }));
    await reloader().request();
    assert.equal(applied.length, 0);
    assert.deepEqual(
      outcomes.map((o) => o.applied),
      [false, false],
    );
    const [unreadable, restart] = outcomes as [
      Extract<ConfigReloadOutcome, { applied: false }>,
      Extract<ConfigReloadOutcome, { applied: false }>,
    ];
    assert.equal(unreadable.sha256, null);
    assert.match(unreadable.problems[0]!, /cannot read/);
    assert.deepEqual(restart.problems, ['server.port: changed, and takes effect only on a restart']);
  });

  it('refuses when applying fails, keeping the running config', async () => {
    target.apply = () => Promise.reject(new Error('store unreachable'));
    writeFileSync(file, doc([scope('a'), scope('b')]));
    await reloader().request();
    assert.deepEqual(
      running.scopes.map((s) => s.name),
      ['a'],
    );
    const o = outcomes[0]!;
    assert.ok(!o.applied && o.problems[0] === 'cannot apply: store unreachable');
  });

  it('folds signals during a reload into one more reload of the file as it is then', async () => {
    let open!: () => void;
    applyGate = new Promise((r) => (open = r));
    const r = reloader();
    writeFileSync(file, doc([scope('a'), scope('b')]));
    const first = r.request();
    // Let the first reload reach apply (it waits on the gate there).
    await new Promise((res) => setImmediate(res));
    writeFileSync(file, doc([scope('a'), scope('b'), scope('c')]));
    void r.request();
    void r.request();
    open();
    await first;
    assert.equal(applied.length, 2);
    assert.deepEqual(
      running.scopes.map((s) => s.name),
      ['a', 'b', 'c'],
    );
  });
});
