/**
 * What the token routes leave in the audit log (issue #5): a real `keywarden serve` signs
 * tokens for a client and refuses a wrong secret (401) and a client without the grant (403);
 * after SIGTERM, `keywarden audit tail` shows one aggregated `sign.activity` record per key,
 * client and minute (count, first and last jti) and one `access.denied` record per refusal,
 * never a secret or a token, and `keywarden audit verify` passes over all of it.
 */
import { strict as assert } from 'node:assert';
import { startDaemon, type Daemon } from '../helpers/daemon';

interface TailRecord {
  seq: number;
  type: string;
  actor: string;
  scope: string | null;
  kid: string | null;
  data: Record<string, unknown>;
}

describe('request audit (e2e: sign activity and refused requests in the chain)', function () {
  this.timeout(180_000);
  let daemon: Daemon;

  before(async () => {
    daemon = await startDaemon({ scopes: [{ name: 'consumer' }, { name: 'enterprise' }] });
  });

  after(async () => {
    await daemon?.stop();
  });

  const addClient = async (name: string, grant: string): Promise<string> => {
    const r = await daemon.cli(['--json', 'clients', 'add', name, '--grant', grant]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { secret: string }).secret;
  };

  const sign = (scope: string, secret: string) =>
    fetch(`${daemon.baseUrl}/v1/scopes/${scope}/sign`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ claims: { sub: 'alice', aud: `${scope}-api` } }),
    });

  it('records sign activity per key, client and minute, and every 401/403, with no secret or token', async () => {
    const issuer = await addClient('issuer-svc', 'consumer:sign');
    const other = await addClient('enterprise-only', 'enterprise:sign');

    const jtis: string[] = [];
    const tokens: string[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await sign('consumer', issuer);
      assert.equal(r.status, 200);
      const { token } = (await r.json()) as { token: string };
      tokens.push(token);
      jtis.push(
        (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti,
      );
    }
    const wrongSecret = `${issuer.slice(0, -4)}AAAA`;
    assert.equal((await sign('consumer', wrongSecret)).status, 401);
    assert.equal((await sign('consumer', other)).status, 403);
    const noCredentials = await fetch(`${daemon.baseUrl}/v1/scopes/consumer/sign`, { method: 'POST' });
    assert.equal(noCredentials.status, 401);

    // SIGTERM: the daemon drains, then writes the minute's counts before it exits.
    assert.equal(await daemon.shutdown(), 0, daemon.output());

    const tail = await daemon.cli(['--local', '--json', 'audit', 'tail', '--limit', '1000']);
    assert.equal(tail.code, 0, tail.stderr);
    const records = JSON.parse(tail.stdout) as TailRecord[];

    // Tokens signed within one minute: one record, unless the run crossed a minute boundary.
    const activity = records.filter((r) => r.type === 'sign.activity');
    assert.ok(activity.length >= 1 && activity.length <= 2, JSON.stringify(activity));
    const total = activity.reduce((n, r) => n + (r.data.count as number), 0);
    assert.equal(total, 7, 'every signed token is counted once');
    for (const r of activity) {
      assert.equal(r.actor, 'client:issuer-svc');
      assert.equal(r.scope, 'consumer');
      assert.match(String(r.kid), /^[A-Za-z0-9_-]{43}$/);
    }
    assert.equal(activity[0]!.data.firstJti, jtis[0]);
    assert.equal(activity[activity.length - 1]!.data.lastJti, jtis[6]);

    const denied = records.filter((r) => r.type === 'access.denied');
    const byReason = new Map(denied.map((r) => [r.data.reason as string, r]));
    assert.equal(denied.length, 3, JSON.stringify(denied));
    const bad = byReason.get('bad-credentials');
    assert.equal(bad?.data.status, 401);
    assert.equal(bad?.scope, 'consumer');
    assert.equal(bad?.data.route, 'POST /v1/scopes/:scope/sign');
    assert.equal(bad?.actor, 'ip:127.0.0.1');
    assert.equal(byReason.get('no-credentials')?.data.status, 401);
    const forbidden = byReason.get('no-sign-grant');
    assert.equal(forbidden?.data.status, 403);
    assert.equal(forbidden?.actor, 'client:enterprise-only');

    // Evidence, not credentials: no secret presented and no token issued appears anywhere.
    const text = tail.stdout;
    for (const secret of [issuer, other, wrongSecret])
      assert.ok(!text.includes(secret), 'a secret was recorded');
    for (const t of tokens) assert.ok(!text.includes(t.split('.')[2]!), 'a token was recorded');

    const verify = await daemon.cli(['--local', '--json', 'audit', 'verify']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const report = JSON.parse(verify.stdout) as { ok: boolean; records: number };
    assert.equal(report.ok, true);
    assert.ok(report.records >= records.length);
  });
});
