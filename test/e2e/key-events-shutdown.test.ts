/**
 * Shutdown with relying parties subscribed: SIGTERM ends every key-events stream first, so the
 * daemon drains and exits 0 instead of waiting on connections that never end by themselves.
 * The streams are read with node:http (one connection each, as most SSE clients hold them).
 */
import { strict as assert } from 'node:assert';
import { get, type IncomingMessage } from 'node:http';
import { startDaemon, type Daemon } from '../helpers/daemon';

describe('key-events streams at shutdown (e2e)', function () {
  this.timeout(120_000);
  let daemon: Daemon;
  after(async () => {
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
});
