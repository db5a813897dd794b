import * as assert from 'node:assert/strict';
import { validateConfig } from '../../../src/config/validate-config';
import { configChanges, isNoChange } from '../../../src/policy/config-changes';
import { TEST_BACKENDS as backends, TEST_POLICY as policy, testScope } from '../../helpers/config-fixtures';

const scope = testScope;
const config = (scopes: unknown[], extra: Record<string, unknown> = {}) =>
  validateConfig({ backends, scopes, ...extra }, { source: 't.yaml', baseDir: '/etc/keywarden' });

describe('configChanges (what a reload changes)', () => {
  it('sees nothing in the same document read twice', () => {
    const c = configChanges(config([scope('a')]), config([scope('a')]));
    assert.ok(isNoChange(c), JSON.stringify(c));
  });

  it('names scopes added, removed and changed (policy, audiences), which a reload applies', () => {
    const before = config([scope('a'), scope('b'), scope('c')]);
    const after = config([
      scope('a', { policy: { ...policy, activeFor: '2d', maxKeyLifetime: '3d' } }),
      scope('c', { audiences: ['api', 'other'] }),
      scope('d'),
    ]);
    const c = configChanges(before, after);
    assert.deepEqual(c.scopesAdded, ['d']);
    assert.deepEqual(c.scopesRemoved, ['b']);
    assert.deepEqual(c.scopesChanged, ['a', 'c']);
    assert.deepEqual(c.restartRequired, []);
    assert.ok(!isNoChange(c));
  });

  it('reloads the server fields a new app takes, and requires a restart for the address', () => {
    const before = config([scope('a')]);
    const after = config([scope('a')], {
      server: { host: '0.0.0.0', port: 9090, bodyLimitBytes: 2048, workerHeader: true },
    });
    const c = configChanges(before, after);
    assert.deepEqual(c.restartRequired.sort(), ['server.host', 'server.port']);
    assert.deepEqual(c.serverChanged.sort(), ['server.bodyLimitBytes', 'server.workerHeader']);
  });

  it('reloads server.keyEvents (each new app serves its streams with the new limits)', () => {
    const before = config([scope('a')]);
    const after = config([scope('a')], {
      server: { keyEvents: { heartbeatSeconds: 5, maxConnectionsPerAddress: 4 } },
    });
    const c = configChanges(before, after);
    assert.deepEqual(c.restartRequired, []);
    assert.deepEqual(c.serverChanged, ['server.keyEvents']);
    assert.ok(isNoChange(configChanges(after, config([scope('a')], { server: after.server }))));
  });

  it('requires a restart for the store, the backends, the audit settings, the data dir and the log level', () => {
    const before = config([scope('a')]);
    const after = validateConfig(
      {
        backends: { hsm: { ...backends.hsm, tokenLabel: 'other' } },
        scopes: [scope('a')],
        store: { url: 'sqlite:/tmp/other.db' },
        audit: { checkpointEveryRecords: 5 },
        dataDir: '/var/lib/other',
        logLevel: 'debug',
      },
      { source: 't.yaml', baseDir: '/etc/keywarden' },
    );
    assert.deepEqual(configChanges(before, after).restartRequired.sort(), [
      // The default admin socket lives in dataDir: it moves with it.
      'admin',
      'audit',
      'backends',
      'dataDir',
      'logLevel',
      'store',
    ]);
  });
});

describe('configChanges: the admin socket and TLS', () => {
  it('requires a restart for any admin socket change (it is made once at start)', () => {
    const before = config([scope('a')]);
    for (const admin of [
      { socket: null },
      { socket: { path: '/run/kw/other.sock' } },
      { socket: { group: 'narrower' } },
    ]) {
      const c = configChanges(before, config([scope('a')], { admin }));
      assert.deepEqual(c.restartRequired, ['admin'], JSON.stringify(admin));
    }
  });

  it('requires a restart to turn TLS, client or operator certificates on or off; re-reads the files otherwise', () => {
    const tls = { certFile: 'c.pem', keyFile: 'k.pem' };
    const server = (t: Record<string, string> | undefined) => ({
      server: { publicUrl: t ? 'https://keys.test' : 'http://keys.test', ...(t ? { tls: t } : {}) },
    });
    const https = (name: string) => scope(name, { issuer: `https://keys.test/${name}` });
    const plain = config([https('a')], server(undefined));
    const on = config([https('a')], server(tls));
    assert.deepEqual(configChanges(plain, on).restartRequired, ['server.tls']);
    const clients = config([https('a')], server({ ...tls, clientCaFile: 'ca.pem' }));
    assert.deepEqual(configChanges(on, clients).restartRequired, ['server.tls.clientCaFile']);
    const operators = config([https('a')], server({ ...tls, operatorCaFile: 'op.pem' }));
    assert.deepEqual(configChanges(on, operators).restartRequired, ['server.tls.operatorCaFile']);
    const same = configChanges(on, config([https('a')], server(tls)));
    assert.deepEqual(same.restartRequired, []);
    assert.deepEqual(same.serverChanged, ['server.tls'], 'the files behind the same paths are read again');
  });
});
