/**
 * Bad input to the rotation engine, through the real CLI: schedules and policies that cannot
 * work are refused at config load with the scope named (exit 3, nothing started), and revoking
 * a key that is already revoked or expired is a clear error (exit 5) that changes nothing.
 */
import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { reconcileScope } from '../../src/lifecycle/reconcile-scope';
import { revokeKey } from '../../src/lifecycle/revoke-key';
import { openRuntime, type Runtime } from '../../src/main';
import { FakeClock } from '../../src/policy/clock';
import type { ConfigProblem } from '../../src/policy/errors';
import type { KeyRecord } from '../../src/policy/key';
import { validateConfig } from '../../src/config/validate-config';
import { runKeywarden } from '../helpers/cli';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const fromSource = { KEYWARDEN_TEST_FROM_SOURCE: '1' };

describe('rotation bad input (e2e: CLI)', function () {
  this.timeout(120_000);
  let token: SoftHsmToken;

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
  });
  after(async () => token?.cleanup());

  it('impossible schedules and policies: exit 3, each problem with its scope, nothing started or written', async () => {
    const doc = testConfigDocument(token, [
      { name: 'ok-seconds', schedule: '*/5 * * * * *' }, // a seconds field is valid
      { name: 'nightly', schedule: '0 3 * *' }, // too few fields
      { name: 'stepzero', schedule: '*/0 * * * *' },
      { name: 'tight', policy: { verifyGrace: '1m', maxTokenTtl: '5m' } },
      { name: 'cachey', policy: { jwksMaxAge: '2m', prepublish: '3m' } },
      { name: 'forever', policy: { activeFor: '500d', maxKeyLifetime: '401d' } },
    ]);
    const configPath = join(token.dir, 'bad.yaml');
    await writeFile(configPath, JSON.stringify(doc), { mode: 0o600 });
    const r = await runKeywarden(['-c', configPath, '--json', 'config', 'check'], { env: fromSource });
    assert.equal(r.code, 3, r.stderr);
    const problems = (JSON.parse(r.stdout) as { error: { code: string; details: ConfigProblem[] } }).error;
    assert.equal(problems.code, 'CONFIG_INVALID');
    const by = (scope: string) => problems.details.filter((p) => p.scope === scope).map((p) => p.path);
    assert.deepEqual(by('ok-seconds'), []);
    assert.deepEqual(by('nightly'), ['scopes[1].schedule']);
    assert.deepEqual(by('stepzero'), ['scopes[2].schedule']);
    assert.deepEqual(by('tight'), ['scopes[3].policy.verifyGrace']);
    assert.deepEqual(by('cachey'), ['scopes[4].policy.prepublish']);
    assert.ok(by('forever').includes('scopes[5].policy.maxKeyLifetime'));
    for (const scope of ['nightly', 'stepzero', 'tight', 'cachey', 'forever']) {
      assert.match(r.stderr, new RegExp(`\\(scope ${scope}\\)`), `stderr does not name scope ${scope}`);
    }
    assert.match(r.stderr, /invalid cron expression "0 3 \* \*"/);
    // Serving with it is refused the same way, before anything is created.
    const serve = await runKeywarden(['-c', configPath, 'serve'], { env: fromSource, timeoutMs: 60_000 });
    assert.equal(serve.code, 3, serve.stderr);
    assert.ok(!existsSync(join(token.dir, 'keywarden.db')), 'a store was created for an invalid config');
  });

  describe('revoking a key that is already revoked or expired', () => {
    let rt: Runtime;
    let configPath: string;
    let expired: KeyRecord;
    let revoked: KeyRecord;

    before(async () => {
      const doc = testConfigDocument(token, [{ name: 'old' }, { name: 'cur' }]);
      configPath = join(token.dir, 'keywarden.yaml');
      await writeFile(configPath, JSON.stringify(doc), { mode: 0o600 });
      const config = validateConfig(doc, { source: configPath, baseDir: token.dir });
      // A key made an hour ago under a 17-minute policy: expired by the wall clock now.
      const clock = new FakeClock(Date.now() - 3600_000);
      rt = await openRuntime(config, { log: pino({ level: 'silent' }), clock });
      await reconcileScope(rt.ctx, 'old');
      expired = (await rt.ctx.keys.listByScope('old'))[0]!;
      clock.set(Date.now());
      await reconcileScope(rt.ctx, 'cur');
      const [cur] = await rt.ctx.keys.listByScope('cur');
      revoked = (await revokeKey(rt.ctx, cur!.kid!, 'test: compromised', 'test')).revoked;
    });
    after(async () => rt?.close());

    for (const which of ['expired', 'revoked'] as const) {
      it(`${which}: exit 5 KEY_NOT_USABLE, no row written or changed`, async () => {
        const key = which === 'expired' ? expired : revoked;
        const before = await rt.ctx.keys.listAll();
        const r = await runKeywarden(
          ['-c', configPath, '--local', 'keys', 'revoke', '--reason', 'again', '--', key.kid!],
          {
            env: fromSource,
          },
        );
        assert.equal(r.code, 5, `${r.stderr}${r.stdout}`);
        assert.match(
          r.stderr,
          new RegExp(`KEY_NOT_USABLE: key ${key.kid} (already expired|was already revoked)`),
        );
        assert.deepEqual(await rt.ctx.keys.listAll(), before);
      });
    }
  });
});
