/**
 * Shutdown and reload with relying parties subscribed: SIGTERM ends every key-events stream as
 * the drain starts, so the daemon exits 0 instead of waiting on connections that never end by
 * themselves; SIGHUP ends the replaced app's streams at the switch (they reconnect to the new
 * app), so the replaced app is released and the next SIGTERM is as quick.
 * The streams are read with node:http (one connection each, as most SSE clients hold them).
 */
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { get, type IncomingMessage } from 'node:http';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { until } from '../helpers/wait';

/** Opens a stream; `ended` resolves with everything read once the server ends it. */
async function openStream(url: string): Promise<{ status: number; ended: Promise<string> }> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => get(url, resolve).on('error', reject));
  const ended = new Promise<string>((resolve) => {
    let body = '';
    res.on('data', (d: Buffer) => (body += d.toString()));
    res.on('end', () => resolve(body));
    res.on('error', () => resolve(body));
    res.on('close', () => resolve(body));
  });
  return { status: res.statusCode ?? 0, ended };
}

describe('key-events streams at shutdown (e2e)', function () {
  this.timeout(120_000);
  let daemon: Daemon;
  afterEach(async () => {
    await daemon?.stop();
  });

  it('SIGTERM ends open streams and the daemon exits 0 well before the helper would kill it', async () => {
    daemon = await startDaemon({ scopes: [{ name: 'push' }] });
    const ended: Promise<string>[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await new Promise<IncomingMessage>((resolve, reject) =>
        get(`${daemon.baseUrl}/scopes/push/key-events`, resolve).on('error', reject),
      );
      assert.equal(res.statusCode, 200);
      ended.push(
        new Promise((resolve) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve(body));
          res.on('error', () => resolve(body));
          res.on('close', () => resolve(body));
        }),
      );
    }
    const started = Date.now();
    const code = await daemon.shutdown();
    assert.equal(code, 0, daemon.output());
    // The helper SIGKILLs after 10 s: exit 0 means the open streams did not hold the drain.
    assert.ok(Date.now() - started < 10_000);
    for (const body of await Promise.all(ended)) assert.match(body, /event: keys/);
  });

  it("SIGHUP ends the replaced app's streams; they reconnect to the new one (a removed scope: 404)", async () => {
    daemon = await startDaemon({ scopes: [{ name: 'push' }, { name: 'gone' }] });
    const url = (scope: string) => `${daemon.baseUrl}/scopes/${scope}/key-events`;
    const before = [await openStream(url('push')), await openStream(url('gone'))];
    for (const s of before) assert.equal(s.status, 200);
    const doc = JSON.parse(readFileSync(daemon.configPath, 'utf8')) as {
      scopes: { name: string }[];
      server: Record<string, unknown>;
    };
    const reloaded = {
      ...doc,
      scopes: doc.scopes.filter((s) => s.name !== 'gone'),
      server: { ...doc.server, keyEvents: { heartbeatSeconds: 5 } },
    };
    writeFileSync(daemon.configPath, JSON.stringify(reloaded, null, 2));
    process.kill(daemon.pid, 'SIGHUP');
    // Both old streams end at the switch (their app is replaced), with the set they were sent.
    for (const body of await Promise.all(before.map((s) => s.ended))) assert.match(body, /event: keys/);
    await until(
      'the removed scope answers 404',
      async () => ((await openStream(url('gone'))).status === 404 ? true : undefined),
      { ms: 30_000, context: daemon.output },
    );
    const after = await openStream(url('push'));
    assert.equal(after.status, 200);
    const started = Date.now();
    assert.equal(await daemon.shutdown(), 0, daemon.output());
    assert.ok(Date.now() - started < 10_000);
    assert.match(await after.ended, /event: keys/);
  });
});
