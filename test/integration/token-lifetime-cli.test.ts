/**
 * `keywarden verify` (the operator CLI, a real child process) refuses a token whose lifetime
 * `exp - iat` is longer than the scope's maxTokenTtl plus the clock skew, even though the
 * scope's real HSM key signed it. The tokens are made with the key in the SoftHSM2 token by an
 * in-process runtime on the same config and store, the way a leaked key would make them. The
 * CLI runs on the system clock, so this runtime's clock is set to it.
 */
import { strict as assert } from 'node:assert';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { systemClock } from '../../src/policy/clock';
import type { KeyRecord } from '../../src/policy/key';
import { runKeywarden } from '../helpers/cli';
import { signingKeyOf, signWithKey } from '../helpers/daemon';
import { startTestRuntime, testConfigDocument, type TestRuntime } from '../helpers/runtime';

const SCOPE = { name: 'demo', policy: { maxTokenTtl: '5m' } };
const MAX_TTL = 300;
const SKEW = 30; // the server-side default clock skew

describe('CLI verify: token lifetime bound (maxTokenTtl)', function () {
  this.timeout(120_000);
  let trt: TestRuntime;
  let configPath: string;
  let key: KeyRecord;

  before(async () => {
    trt = await startTestRuntime([SCOPE]);
    // The CLI process reads the same config, token and store.
    configPath = join(trt.token.dir, 'config.yaml');
    await writeFile(configPath, stringify(testConfigDocument(trt.token, [SCOPE])));
    trt.clock.set(systemClock.now().getTime());
    await reconcileAll(trt.ctx, 'test');
    await trt.ctx.cache.refresh(true);
    key = await signingKeyOf(trt.ctx, 'demo');
  });
  after(async () => trt?.close());

  /** A token signed in the HSM by the scope's key, issued now and living `seconds`. */
  const living = (seconds: number) => {
    const iat = Math.floor(Date.now() / 1000);
    return signWithKey(
      trt.ctx,
      key,
      { alg: key.alg, kid: key.kid, typ: 'JWT' },
      { iss: 'https://issuer.test/demo', aud: 'demo-api', sub: 'mallory', iat, nbf: iat, exp: iat + seconds },
    );
  };
  const verify = (token: string, ...globalOpts: string[]) =>
    runKeywarden([
      '-c',
      configPath,
      // No daemon runs here: the direct path.
      '--local',
      ...globalOpts,
      'verify',
      '--scope',
      'demo',
      '--audience',
      'demo-api',
      token,
    ]);

  it('refuses a token living until the key expires, and one second past maxTokenTtl + skew (exit 1)', async () => {
    const untilKeyExpiry = Math.floor(key.expiresAt.getTime() / 1000) - Math.floor(Date.now() / 1000);
    assert.ok(untilKeyExpiry > MAX_TTL + SKEW + 60, `the key expires in ${untilKeyExpiry} s`);
    const leaked = await verify(await living(untilKeyExpiry), '--json');
    assert.equal(leaked.code, 1, leaked.stderr);
    const answer = JSON.parse(leaked.stdout) as { valid: boolean; reason: string; message: string };
    assert.equal(answer.valid, false);
    assert.equal(answer.reason, 'token_lifetime_exceeded');
    assert.match(answer.message, /maxTokenTtl of 300 s/);

    const justOver = await verify(await living(MAX_TTL + SKEW + 1));
    assert.equal(justOver.code, 1, justOver.stderr);
    assert.match(justOver.stderr, /^invalid token: token_lifetime_exceeded: /);
  });

  it('accepts a token living exactly maxTokenTtl + skew (exit 0, the claims printed)', async () => {
    const atBound = await verify(await living(MAX_TTL + SKEW), '--json');
    assert.equal(atBound.code, 0, atBound.stderr + atBound.stdout);
    const answer = JSON.parse(atBound.stdout) as {
      valid: boolean;
      claims: { sub: string; exp: number; iat: number };
    };
    assert.equal(answer.valid, true);
    assert.equal(answer.claims.sub, 'mallory');
    assert.equal(answer.claims.exp - answer.claims.iat, MAX_TTL + SKEW);
  });
});
