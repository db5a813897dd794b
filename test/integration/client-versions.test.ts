/**
 * The auth cache's client versions on both stores: the version a secret check records and the
 * one the poll reads must be equal for an unchanged row (else every poll would drop every
 * cached answer), and must differ after any change an answer depends on, however the row was
 * written. PostgreSQL returns bigint columns as strings and SQLite as numbers; grants are JSON
 * text on both.
 */
import { strict as assert } from 'node:assert';
import { withAuthenticator } from '../helpers/auth';
import {
  addClient,
  checkClientSecret,
  clientVersions,
  rotateClientSecret,
} from '../../src/lifecycle/clients';
import { sealClients } from '../../src/lifecycle/seal-clients';
import { FakeClock } from '../../src/policy/clock';
import { hasCode } from '../../src/policy/errors';
import { ClientEntity } from '../../src/store/entities/client.entity';
import { bothStores } from '../helpers/postgres';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

const { stores: STORES, stop: stopPostgres } = bothStores('clients');

describe('client versions (auth cache), on both stores', function () {
  this.timeout(120_000);
  after(() => stopPostgres());

  for (const store of STORES) {
    describe(store.name, () => {
      let trt: TestRuntime;
      before(async () => {
        trt = await startTestRuntime([{ name: 'alpha' }], {
          clock: new FakeClock(Date.UTC(2026, 5, 1)),
          storeUrl: await store.url(),
        });
      });
      after(async () => trt?.close());

      const clientRows = () => trt.rt.ds.getRepository(ClientEntity);
      const polledVersion = async (id: string) => (await clientVersions(trt.ctx)).get(id);

      it('a check and a poll agree on an unchanged row, grants or JSON null', async () => {
        const a = await addClient(trt.ctx, 'agree', { alpha: ['sign', 'verify'] }, 'test');
        const checked = await checkClientSecret(trt.ctx, a.secret);
        assert.ok(checked);
        assert.equal(await polledVersion(a.client.id), checked.version);
        // Grants stored as JSON null (never written by keywarden) read as no grants on both paths.
        await trt.rt.ds
          .createQueryBuilder()
          .update(ClientEntity)
          .set({ grants: () => "'null'" })
          .where('id = :id', { id: a.client.id })
          .execute();
        // The edit breaks the row's seal: refused until an operator vouches for it as it is.
        assert.equal(await checkClientSecret(trt.ctx, a.secret), null);
        await sealClients(trt.ctx, { clients: ['agree'], all: false, force: true, dryRun: false }, 'test');
        const again = await checkClientSecret(trt.ctx, a.secret);
        assert.deepEqual(again?.grants, {});
        assert.equal(await polledVersion(a.client.id), again?.version);
        assert.notEqual(again?.version, checked.version);
      });

      it('a cached answer survives a poll with no change, and not one after a rotation in the same millisecond', async () => {
        const c = await addClient(trt.ctx, 'rotated', { alpha: ['sign'] }, 'test');
        await withAuthenticator(trt.kw, async (auth) => {
          assert.equal((await auth.authenticate(`Bearer ${c.secret}`)).id, c.client.id);
          await auth.poll();
          // Hash broken without a poll: only the cached answer can accept the secret.
          const { secretHash } = await clientRows().findOneByOrFail({ id: c.client.id });
          await clientRows().update({ id: c.client.id }, { secretHash: 'scrypt$broken' });
          assert.equal((await auth.authenticate(`Bearer ${c.secret}`)).id, c.client.id);
          await clientRows().update({ id: c.client.id }, { secretHash });
          await auth.poll(); // the hash went and came back: same content, the answer may stay
          const rotated = await rotateClientSecret(trt.ctx, 'rotated', 'test');
          assert.equal(
            rotated.client.updatedAt.getTime(),
            c.client.updatedAt.getTime(),
            'FakeClock did not move',
          );
          await auth.poll();
          await assert.rejects(auth.authenticate(`Bearer ${c.secret}`), (e) => hasCode(e, 'UNAUTHENTICATED'));
          assert.equal((await auth.authenticate(`Bearer ${rotated.secret}`)).id, c.client.id);
        });
      });
    });
  }
});
