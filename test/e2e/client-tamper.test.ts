/**
 * The inserted-client attack against a running `keywarden serve` with two workers, on SQLite and
 * PostgreSQL: an attacker with plain SQL access to the store (no HSM access) inserts an API client
 * row with a secret of their own and sign grants on every scope. Both workers answer 401 on sign
 * and verify, the legitimate client keeps working, the refusal is logged and recorded in the audit
 * log by the scheduling process, `clients list` shows it refused, and the CLI refuses bad `clients
 * seal` requests and rotating the row without changing anything.
 */
import { strict as assert } from 'node:assert';
import { AuditStore } from '../../src/audit/audit-store';
import type { Runtime } from '../../src/main';
import { attackerClientRow, clientWriter } from '../helpers/client-tamper';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { bothStores } from '../helpers/postgres';
import { until } from '../helpers/wait';

const { stores: STORES, stop: stopPostgres } = bothStores('clienttamper');
const SCOPES = [{ name: 'consumer' }, { name: 'enterprise' }];
/** Waits here include a daemon start with several workers on a loaded machine. */
const SLOW = { ms: 40_000, everyMs: 250 };

describe('an API client inserted into the store of a running daemon (e2e)', function () {
  this.timeout(300_000);
  after(() => stopPostgres());

  for (const store of STORES) {
    describe(`on ${store.name}`, () => {
      let daemon: Daemon;
      let rt: Runtime;
      before(async () => {
        daemon = await startDaemon({
          scopes: SCOPES,
          storeUrl: await store.url(),
          logLevel: 'info',
          workers: 2,
        });
        rt = await daemon.openRuntime();
      });
      after(async () => {
        await rt?.close();
        await daemon?.stop();
      });

      const post = async (path: string, secret: string, body: unknown) => {
        const r = await fetch(`${daemon.baseUrl}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        return { status: r.status, body: (await r.json()) as Record<string, unknown> };
      };
      const sign = (scope: string, secret: string) =>
        post(`/v1/scopes/${scope}/sign`, secret, { claims: { aud: `${scope}-api`, sub: 'x' } });
      const verify = (scope: string, secret: string, token: string) =>
        post(`/v1/scopes/${scope}/verify`, secret, { token, audience: `${scope}-api` });

      it('is refused by every worker (401, nothing signed) and reported; rotate-secret refuses it, seal --all --dry-run shows it as unsealed', async () => {
        const added = await daemon.cli([
          '--json',
          'clients',
          'add',
          'good',
          '--grant',
          'consumer:sign,verify',
        ]);
        assert.equal(added.code, 0, added.stderr);
        const good = (JSON.parse(added.stdout) as { secret: string }).secret;
        const token = await until(
          'the legitimate client signing',
          async () => {
            const r = await sign('consumer', good);
            return r.status === 200 ? (r.body.token as string) : undefined;
          },
          SLOW,
        );

        const mallory = await attackerClientRow(
          { consumer: ['sign', 'verify'], enterprise: ['sign', 'verify'] },
          { name: 'mallory' },
        );
        await clientWriter(rt.ds).insert(mallory.row);
        const rowBefore = await clientWriter(rt.ds).read(mallory.id);
        // Enough requests that both workers answer, across more than one client poll.
        for (let i = 0; i < 8; i++) {
          for (const scope of ['consumer', 'enterprise']) {
            const s = await sign(scope, mallory.secret);
            assert.equal(s.status, 401, `sign ${scope}: ${JSON.stringify(s.body)}`);
            assert.equal(s.body.token, undefined);
            assert.equal((await verify(scope, mallory.secret, token)).status, 401, `verify ${scope}`);
          }
          await new Promise((r) => setTimeout(r, 150));
        }
        assert.equal((await verify('consumer', good, token)).body.valid, true, 'the legitimate client broke');

        // Reported: error log lines naming the row, and an audit record from the scheduling process.
        await until(
          'the refusal in the daemon log',
          async () =>
            daemon.output().includes(mallory.id) && /API client refused/.test(daemon.output())
              ? true
              : undefined,
          SLOW,
        );
        const record = await until(
          'a client.integrity-failed record',
          async () => {
            const rs = await new AuditStore(rt.ds).tail({ type: 'client.integrity-failed', limit: 20 });
            return rs.find((r) => r.data.clientId === mallory.id);
          },
          SLOW,
        );
        assert.equal(record.data.reason, 'unsealed');
        // Recorded once, by the one scheduling process, not once per worker.
        await new Promise((r) => setTimeout(r, 1500));
        const all = await new AuditStore(rt.ds).tail({ type: 'client.integrity-failed', limit: 20 });
        assert.equal(all.filter((r) => r.data.clientId === mallory.id).length, 1);

        const list = await daemon.cli(['--json', 'clients', 'list']);
        assert.equal(list.code, 0, list.stderr);
        const listed = JSON.parse(list.stdout) as { name: string; trust: string; reason?: string }[];
        assert.deepEqual(
          listed.map((c) => [c.name, c.trust, c.reason]),
          [
            ['good', 'trusted', undefined],
            ['mallory', 'refused', 'unsealed'],
          ],
        );

        // Bad requests and refused changes: a clear error, a meaningful exit code, nothing changed.
        for (const [args, code, message] of [
          [['clients', 'seal'], 2, /name the clients to seal/],
          [['clients', 'seal', 'mallory', '--all'], 2, /not both/],
          [['clients', 'seal', '--all', '--force'], 2, /name them one by one/],
          [['clients', 'seal', 'mallory', 'nobody'], 4, /CLIENT_NOT_FOUND.*"nobody"/],
          [['clients', 'seal', '--bogus'], 2, /unknown option/],
          [['clients', 'rotate-secret', 'mallory'], 5, /CLIENT_UNTRUSTED/],
        ] as const) {
          const r = await daemon.cli([...args]);
          assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
          assert.match(r.stderr, message);
        }
        const dry = await daemon.cli(['clients', 'seal', '--all', '--dry-run']);
        assert.equal(dry.code, 0, dry.stderr);
        assert.match(dry.stdout, /mallory .* unsealed +seal\n/);
        assert.match(dry.stdout, /dry run: 1 client\(s\) would be sealed; nothing was changed/);
        assert.deepEqual(await clientWriter(rt.ds).read(mallory.id), rowBefore);
        assert.equal((await sign('consumer', mallory.secret)).status, 401);
      });
    });
  }
});
