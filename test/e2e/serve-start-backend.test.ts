/**
 * `keywarden serve` with a backend that cannot work as configured (issue #18 item 2): a wrong PIN,
 * a token label no token has, a module that does not exist. serve ends its start with exit 6 and
 * the error code on stderr, so a supervisor shows a failed service (the shipped unit does not
 * restart it: RestartPreventExitStatus=6, since a restart cannot fix these and would try a wrong
 * PIN again and again). `hsm check` with a wrong PIN says BACKEND_PIN_INCORRECT, never "0 objects".
 */
import { strict as assert } from 'node:assert';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDaemon, startServe, type Daemon } from '../helpers/daemon';

describe('serve start-up with a backend that cannot work as configured (e2e)', function () {
  this.timeout(180_000);
  let daemon: Daemon;
  let doc: { backends: { hsm: Record<string, unknown> } };

  before(async () => {
    daemon = await startDaemon({ scopes: [{ name: 'demo' }] });
    await daemon.shutdown();
    doc = JSON.parse(await readFile(daemon.configPath, 'utf8')) as typeof doc;
  });

  after(async () => {
    await daemon?.stop();
  });

  /** Writes a config with the hsm backend changed by `change` and returns its path. */
  async function configWith(name: string, change: Record<string, unknown>): Promise<string> {
    const path = join(daemon.token.dir, `${name}.yaml`);
    await writeFile(
      path,
      JSON.stringify({ ...doc, backends: { ...doc.backends, hsm: { ...doc.backends.hsm, ...change } } }),
      {
        mode: 0o600,
      },
    );
    return path;
  }

  const cases: [string, () => Promise<Record<string, unknown>>, string][] = [
    [
      'a wrong PIN',
      async () => {
        const pinFile = join(daemon.token.dir, 'wrong-pin');
        await writeFile(pinFile, 'not-the-pin', { mode: 0o600 });
        return { pin: { file: pinFile } };
      },
      'BACKEND_PIN_INCORRECT',
    ],
    ['a token label no token has', async () => ({ tokenLabel: 'no-such-token' }), 'BACKEND_TOKEN_NOT_FOUND'],
    [
      'a module that does not exist',
      async () => ({ module: '/nonexistent/libpkcs11.so' }),
      'BACKEND_MODULE_NOT_FOUND',
    ],
  ];

  for (const [what, change, code] of cases) {
    it(`${what}: serve exits 6 with ${code}, and never listens`, async () => {
      const configPath = await configWith(code.toLowerCase(), await change());
      const serve = await startServe(configPath, { waitHealthy: false, args: ['--workers', '1'] });
      const timer = setTimeout(() => void serve.kill(), 60_000);
      const end = await serve.exited;
      clearTimeout(timer);
      assert.equal(end.code, 6, serve.output());
      assert.match(serve.output(), new RegExp(`keywarden: ${code}: backend hsm: `));
      await assert.rejects(fetch(`${serve.baseUrl}/healthz`), 'nothing listens');
    });
  }

  it('with --workers 2 too: the primary ends the start before any worker is forked', async () => {
    const configPath = await configWith('pin-workers', {
      pin: { file: join(daemon.token.dir, 'wrong-pin') },
    });
    const serve = await startServe(configPath, { waitHealthy: false, args: ['--workers', '2'] });
    const timer = setTimeout(() => void serve.kill(), 60_000);
    const end = await serve.exited;
    clearTimeout(timer);
    assert.equal(end.code, 6, serve.output());
    assert.match(serve.output(), /BACKEND_PIN_INCORRECT/);
  });

  it('hsm check with a wrong PIN reports BACKEND_PIN_INCORRECT and exits 6, not an empty token', async () => {
    const configPath = await configWith('pin-check', { pin: { file: join(daemon.token.dir, 'wrong-pin') } });
    const human = await daemon.cli(['-c', configPath, '--local', 'hsm', 'check']);
    assert.equal(human.code, 6, human.stderr + human.stdout);
    assert.match(human.stdout, /backend hsm: NOT CHECKED: BACKEND_PIN_INCORRECT: /);
    assert.doesNotMatch(human.stdout, /0 object\(s\)/);
    const json = await daemon.cli(['-c', configPath, '--local', '--json', 'hsm', 'check']);
    assert.equal(json.code, 6);
    const report = JSON.parse(json.stdout) as { ok: boolean; backends: { error?: { code: string } }[] };
    assert.equal(report.ok, false);
    assert.equal(report.backends[0]?.error?.code, 'BACKEND_PIN_INCORRECT');
  });
});
