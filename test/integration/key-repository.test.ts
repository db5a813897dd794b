/**
 * Key lookups the operator commands rely on (`keys revoke <kid prefix>`, `scan --revoke`), on
 * both stores: a kid prefix matches exactly as typed. LIKE would not do: `_` is a base64url
 * character and a LIKE wildcard, and SQLite's LIKE ignores case, so a prefix could name another
 * key than the one typed, or a unique prefix could be called ambiguous.
 */
import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import type { KeyRecord } from '../../src/policy/key';
import { KeywardenError } from '../../src/policy/errors';
import { openStore } from '../../src/store/data-source';
import { KeyRepository } from '../../src/store/key-repository';
import { bothStores } from '../helpers/postgres';

const { stores: STORES, stop: stopPostgres } = bothStores('keyrepo');

/** A ready row with the given kid (the lookups read nothing else of it). */
function row(kid: string): KeyRecord {
  const t = new Date('2026-01-01T00:00:00Z');
  const id = randomUUID();
  return {
    id,
    kid,
    scope: 'consumer',
    alg: 'ES256',
    status: 'ready',
    backendRef: { backend: 'hsm', ref: { id } },
    publicJwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' },
    publishAt: t,
    activateAt: t,
    retireAt: t,
    expiresAt: t,
    revokedAt: null,
    revokedReason: null,
    destroyedAt: null,
    createdAt: t,
    createdBy: 'test',
  };
}

describe('key repository: kid prefix lookup', () => {
  after(() => stopPostgres());

  for (const store of STORES) {
    describe(`on ${store.name}`, () => {
      let dir: string;
      let ds: DataSource;
      let repo: KeyRepository;

      before(async () => {
        dir = await mkdtemp(join(tmpdir(), 'keywarden-keyrepo-'));
        ds = await openStore((await store.url()) ?? `sqlite:${join(dir, 'k.db')}`);
        repo = new KeyRepository(ds);
        for (const kid of ['AbCdEfGh-one', 'abcdefgh-two', 'wxyz1234Xrest', 'wxyz1234_rest', 'uniqueAA0001'])
          await repo.insertGenerating(row(kid), new Date());
      });
      after(async () => {
        await ds.destroy();
        await rm(dir, { recursive: true, force: true });
      });

      const kidOf = async (p: string) => (await repo.findByKidOrPrefix(p))?.kid ?? null;

      it('finds a full kid, and a unique prefix of 8 or more characters, case and all', async () => {
        assert.equal(await kidOf('AbCdEfGh-one'), 'AbCdEfGh-one');
        assert.equal(await kidOf('uniqueAA'), 'uniqueAA0001');
        // Differing only in case from another key's prefix: each names its own key.
        assert.equal(await kidOf('AbCdEfGh'), 'AbCdEfGh-one');
        assert.equal(await kidOf('abcdefgh'), 'abcdefgh-two');
      });

      it('takes `_` as itself, not as any character', async () => {
        assert.equal(await kidOf('wxyz1234_'), 'wxyz1234_rest');
        assert.equal(await kidOf('wxyz1234X'), 'wxyz1234Xrest');
        assert.equal(await kidOf('uniqueA_'), null);
      });

      it('finds nothing for another case, or a prefix shorter than 8 characters', async () => {
        assert.equal(await kidOf('UNIQUEAA'), null);
        assert.equal(await kidOf('unique'), null);
      });

      it('refuses a prefix that names two keys', async () => {
        await assert.rejects(
          repo.findByKidOrPrefix('wxyz1234'),
          (e: unknown) => e instanceof KeywardenError && e.code === 'REQUEST_INVALID',
        );
      });
    });
  }
});
