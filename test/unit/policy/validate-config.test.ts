import * as assert from 'node:assert/strict';
import { isPkcs11Config } from '../../../src/backends/pkcs11/config';
import { ConfigInvalidError } from '../../../src/policy/errors';
import { ABSOLUTE_MAX_KEY_LIFETIME_SECONDS } from '../../../src/policy/scope';
import { validateConfig } from '../../../src/config/validate-config';
import { loadConfig, parseConfigText } from '../../../src/config/load-config';
import { parseDurationSeconds } from '../../../src/policy/duration';
import { TEST_BACKENDS as backends, TEST_POLICY as policy, testScope } from '../../helpers/config-fixtures';

const scope = (over: Record<string, unknown> = {}) => testScope('demo', over);
const doc = (scopes: unknown[], extra: Record<string, unknown> = {}) => ({ backends, scopes, ...extra });

function problems(raw: unknown) {
  try {
    validateConfig(raw, { source: 'test.yaml', baseDir: '/etc/keywarden' });
  } catch (e) {
    assert.ok(e instanceof ConfigInvalidError, `expected ConfigInvalidError, got ${e}`);
    assert.equal(e.code, 'CONFIG_INVALID');
    return e.problems;
  }
  assert.fail('config was accepted');
}

describe('config validation', () => {
  it('accepts a valid file, converts durations to seconds and freezes it', () => {
    const c = validateConfig(doc([scope()]), { source: 't', baseDir: '/etc/keywarden' });
    assert.equal(c.scopes[0]?.policy.prepublishSeconds, 600);
    assert.equal(c.scopes[0]?.policy.maxKeyLifetimeSeconds, 172800);
    assert.equal(c.store.url, 'sqlite:/etc/keywarden/data/keywarden.db');
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.scopes[0]?.policy));
    assert.throws(
      () => ((c.scopes[0]!.policy as { activeForSeconds: number }).activeForSeconds = 1),
      TypeError,
    );
  });

  it('resolves relative module environment paths against the config, also after unix:path=', () => {
    const moduleEnv = {
      SOFTHSM2_CONF: '../hsm/softhsm2.conf',
      P11_KIT_SERVER_ADDRESS: 'unix:path=../run/p11-kit/pkcs11',
      ABSOLUTE: 'unix:path=/run/keywarden-hsm/pkcs11',
      OTHER: 'plain-value',
    };
    const c = validateConfig(doc([scope()], { backends: { hsm: { ...backends.hsm, moduleEnv } } }), {
      source: 't',
      baseDir: '/etc/keywarden/config',
    });
    const hsm = c.backends.hsm;
    assert.ok(isPkcs11Config(hsm));
    assert.deepEqual(hsm.moduleEnv, {
      SOFTHSM2_CONF: '/etc/keywarden/hsm/softhsm2.conf',
      P11_KIT_SERVER_ADDRESS: 'unix:path=/etc/keywarden/run/p11-kit/pkcs11',
      ABSOLUTE: 'unix:path=/run/keywarden-hsm/pkcs11',
      OTHER: 'plain-value',
    });
  });

  it('locks PKCS#11 object-store work through <dataDir>/<backend>.pkcs11.lock unless told otherwise', () => {
    const lockOf = (hsm: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
      const c = validateConfig(doc([scope()], { backends: { hsm: { ...backends.hsm, ...hsm } }, ...extra }), {
        source: 't',
        baseDir: '/etc/keywarden',
      });
      assert.ok(isPkcs11Config(c.backends.hsm));
      return c.backends.hsm.objectLock;
    };
    assert.deepEqual(lockOf({}, { dataDir: '/var/lib/keywarden' }), {
      file: '/var/lib/keywarden/hsm.pkcs11.lock',
      required: false,
    });
    assert.deepEqual(lockOf({ objectLockFile: 'locks/token.lock' }, { dataDir: '/var/lib/keywarden' }), {
      file: '/var/lib/keywarden/locks/token.lock',
      required: true,
    });
    assert.deepEqual(lockOf({ objectLockFile: '/run/kw/token.lock' }), {
      file: '/run/kw/token.lock',
      required: true,
    });
    assert.equal(lockOf({ objectLockFile: null }), null);
    const [p, ...rest] = problems(
      doc([scope()], { backends: { hsm: { ...backends.hsm, objectLockFile: '' } } }),
    );
    assert.equal(rest.length, 0);
    assert.equal(p?.path, 'backends.hsm.objectLockFile');
  });

  it('refuses verifyGrace < maxTokenTtl, naming scope, field and numbers', () => {
    const [p, ...rest] = problems(doc([scope({ policy: { ...policy, verifyGrace: '10m' } })]));
    assert.equal(rest.length, 0);
    assert.equal(p?.scope, 'demo');
    assert.equal(p?.path, 'scopes[0].policy.verifyGrace');
    assert.match(p!.message, /10m.*15m/);
  });

  it('refuses a lifetime above maxKeyLifetime and maxKeyLifetime above the 400d ceiling', () => {
    const ps = problems(doc([scope({ policy: { ...policy, activeFor: '500d', maxKeyLifetime: '401d' } })]));
    assert.deepEqual(
      ps.map((p) => p.path),
      ['scopes[0].policy.maxKeyLifetime', 'scopes[0].policy.maxKeyLifetime'],
    );
    assert.match(ps[0]!.message, /400d/);
    assert.equal(ABSOLUTE_MAX_KEY_LIFETIME_SECONDS, 400 * 86400);
  });

  it('refuses prepublish shorter than twice the JWKS max-age', () => {
    const ps = problems(doc([scope({ policy: { ...policy, prepublish: '9m' } })]));
    assert.equal(ps[0]?.path, 'scopes[0].policy.prepublish');
  });

  it('reports every problem of every scope at once, shape and rule problems together', () => {
    const ps = problems(
      doc([
        scope({ alg: 'HS256' }),
        scope({ name: 'b', issuer: 'https://issuer.test/demo', backend: 'nope', schedule: '61 * * * *' }),
        scope({ name: 'c', issuer: 'https://c.test', policy: { ...policy, activeFor: 'soon' } }),
      ]),
    );
    assert.deepEqual(
      ps.map((p) => [p.scope, p.path]),
      [
        ['demo', 'scopes[0].alg'],
        ['b', 'scopes[1].issuer'],
        ['b', 'scopes[1].backend'],
        ['b', 'scopes[1].schedule'],
        ['c', 'scopes[2].policy.activeFor'],
      ],
    );
    assert.match(ps[3]!.message, /61/);
  });

  it('refuses unknown fields (a typo must not fall back to a default) and a PIN in the YAML', () => {
    const ps = problems(doc([scope({ polcy: policy })]));
    assert.ok(ps.some((p) => p.path === 'scopes[0]' && /polcy/.test(p.message)));
    const ps2 = problems({ ...doc([scope()]), backends: { hsm: { ...backends.hsm, pin: '1234' } } });
    assert.ok(ps2.some((p) => p.path === 'backends.hsm.pin'));
  });

  it('server.workerHeader is off unless set, and must be a boolean', () => {
    assert.equal(validateConfig(doc([scope()]), { source: 't', baseDir: '/e' }).server.workerHeader, false);
    const on = validateConfig(doc([scope()], { server: { workerHeader: true } }), {
      source: 't',
      baseDir: '/e',
    });
    assert.equal(on.server.workerHeader, true);
    assert.equal(on.server.keyRefreshSeconds, 2, 'other server fields keep their defaults');
    const ps = problems(doc([scope()], { server: { workerHeader: 'yes' } }));
    assert.deepEqual(
      ps.map((p) => p.path),
      ['server.workerHeader'],
    );
  });

  it('server.keyEvents: documented defaults; bad values are refused with the field named', () => {
    const c = validateConfig(doc([scope()]), { source: 't', baseDir: '/e' });
    assert.deepEqual(c.server.keyEvents, {
      heartbeatSeconds: 15,
      maxConnectionsPerAddress: 32,
      maxConnections: 10000,
    });
    const some = validateConfig(
      doc([scope()], { server: { keyEvents: { maxConnectionsPerAddress: 200 } } }),
      {
        source: 't',
        baseDir: '/e',
      },
    );
    assert.deepEqual(some.server.keyEvents, {
      heartbeatSeconds: 15,
      maxConnectionsPerAddress: 200,
      maxConnections: 10000,
    });
    const bad: [Record<string, unknown>, string][] = [
      [{ heartbeatSeconds: 0 }, 'server.keyEvents.heartbeatSeconds'],
      [{ heartbeatSeconds: 1.5 }, 'server.keyEvents.heartbeatSeconds'],
      [{ maxConnectionsPerAddress: -1 }, 'server.keyEvents.maxConnectionsPerAddress'],
      [{ maxConnections: '10' }, 'server.keyEvents.maxConnections'],
      [{ heartbeat: 15 }, 'server.keyEvents'],
    ];
    for (const [keyEvents, path] of bad) {
      const ps = problems(doc([scope()], { server: { keyEvents } }));
      assert.deepEqual(
        ps.map((p) => p.path),
        [path],
        JSON.stringify(keyEvents),
      );
    }
  });

  it('the annotated example configurations are valid, with the documented server defaults', () => {
    for (const file of ['config/production.example.yaml', 'config/default.yaml']) {
      const c = loadConfig(file, {});
      assert.ok(c.scopes.length > 0, file);
      assert.equal(c.server.workerHeader, false, file);
      // Production serves HTTPS itself; the quick start stays on loopback HTTP.
      assert.equal(c.server.tls !== undefined, file.includes('production'), file);
    }
  });

  it('scheduler.concurrency: 8 unless set; a whole number 1..1024', () => {
    const c = validateConfig(doc([scope()]), { source: 't', baseDir: '/' });
    assert.equal(c.scheduler.concurrency, 8);
    const set = validateConfig(doc([scope()], { scheduler: { concurrency: 32 } }), {
      source: 't',
      baseDir: '/',
    });
    assert.equal(set.scheduler.concurrency, 32);
    for (const concurrency of [0, 1025, 2.5, '8']) {
      assert.deepEqual(
        problems(doc([scope()], { scheduler: { concurrency } })).map((p) => p.path),
        ['scheduler.concurrency'],
        String(concurrency),
      );
    }
  });

  it('refuses a cron schedule that never fires', () => {
    const ps = problems(doc([scope({ schedule: '0 0 31 2 *' })]));
    assert.deepEqual(
      ps.map((p) => p.path),
      ['scopes[0].schedule'],
    );
    assert.match(ps[0]!.message, /never fires/);
    assert.doesNotThrow(() =>
      validateConfig(doc([scope({ schedule: '0 0 29 2 *' })]), { source: 't', baseDir: '/' }),
    );
  });

  it('refuses duplicate scope names, unknown backends and EdDSA on Azure', () => {
    const azure = { type: 'azure', vaultUrl: 'https://v.vault.azure.net' };
    const ps = problems(
      doc(
        [
          scope(),
          scope({ issuer: 'https://other' }),
          scope({ name: 'z', issuer: 'https://z', alg: 'EdDSA', backend: 'akv' }),
        ],
        { backends: { ...backends, akv: azure } },
      ),
    );
    assert.deepEqual(
      ps.map((p) => p.path),
      ['scopes[1].name', 'scopes[2].alg'],
    );
  });

  it('reports YAML syntax errors and duplicate keys as CONFIG_INVALID', () => {
    assert.throws(() => parseConfigText('scopes: [\n', 'x.yaml', {}), { code: 'CONFIG_INVALID' });
    assert.throws(() => parseConfigText('a: 1\na: 2\n', 'x.yaml', {}), { code: 'CONFIG_INVALID' });
  });

  it('KEYWARDEN_STORE_URL overrides store.url', () => {
    const yaml = `backends:\n  hsm: {type: pkcs11, module: /m.so, tokenLabel: t, pin: {env: P}}\nscopes:\n  - {name: a, issuer: 'https://a', audiences: [x], alg: ES256, backend: hsm, policy: {prepublish: 10m, activeFor: 1d, verifyGrace: 1h, maxTokenTtl: 15m, destroyAfter: 1d, maxKeyLifetime: 2d}}\n`;
    const c = parseConfigText(yaml, '/etc/k/c.yaml', { KEYWARDEN_STORE_URL: 'postgres://u:p@h/db' });
    assert.equal(c.store.url, 'postgres://u:p@h/db');
  });

  it('server.tls: paths resolve against the config; TLS 1.2 unless TLSv1.3 is asked for', () => {
    const c = validateConfig(
      doc([scope()], { server: { tls: { certFile: 'tls/server.crt', keyFile: '/etc/tls/server.key' } } }),
      { source: 't', baseDir: '/etc/keywarden' },
    );
    assert.deepEqual(c.server.tls, {
      certFile: '/etc/keywarden/tls/server.crt',
      keyFile: '/etc/tls/server.key',
      minVersion: 'TLSv1.2',
    });
    const none = validateConfig(doc([scope()]), { source: 't', baseDir: '/etc/keywarden' });
    assert.equal(none.server.tls, undefined);
  });

  it('server.tls refuses missing files, unknown fields and versions below TLS 1.2, each by name', () => {
    const ps = problems(
      doc([scope()], { server: { tls: { keyFile: 'k', minVersion: 'TLSv1.1', sslv3: true } } }),
    );
    const paths = ps.map((p) => p.path).sort();
    assert.deepEqual(paths, ['server.tls', 'server.tls.certFile', 'server.tls.minVersion']);
  });

  it('with server.tls, an http issuer or publicUrl is refused (every one, by name)', () => {
    const ps = problems(
      doc(
        [
          scope({ issuer: 'http://127.0.0.1:8443/scopes/demo' }),
          scope({ name: 'b', issuer: 'https://issuer.test/b' }),
          scope({ name: 'c', issuer: 'http://issuer.test/c' }),
        ],
        { server: { publicUrl: 'http://keys.test', tls: { certFile: 'c', keyFile: 'k' } } },
      ),
    );
    assert.deepEqual(
      ps.map((p) => [p.path, p.scope]),
      [
        ['server.publicUrl', undefined],
        ['scopes[0].issuer', 'demo'],
        ['scopes[2].issuer', 'c'],
      ],
    );
    // Without TLS the same issuers are fine (the loopback quick start).
    validateConfig(doc([scope({ issuer: 'http://127.0.0.1:8080/scopes/demo' })]), {
      source: 't',
      baseDir: '/etc/keywarden',
    });
  });

  it('with server.tls, the scheme is compared as a URL does: HTTP:// is http (refused), HTTPS:// is https', () => {
    // RFC 3986: schemes are case-insensitive; a string prefix test let HTTP:// through.
    const ps = problems(
      doc([scope({ issuer: 'HTTP://127.0.0.1:8443/scopes/demo' })], {
        server: { publicUrl: 'Http://keys.test', tls: { certFile: 'c', keyFile: 'k' } },
      }),
    );
    assert.deepEqual(
      ps.map((p) => p.path),
      ['server.publicUrl', 'scopes[0].issuer'],
    );
    const c = validateConfig(
      doc([scope({ issuer: 'HTTPS://issuer.test/demo' })], {
        server: { publicUrl: 'HTTPS://keys.test', tls: { certFile: 'c', keyFile: 'k' } },
      }),
      { source: 't', baseDir: '/etc/keywarden' },
    );
    assert.equal(c.server.publicUrl, 'HTTPS://keys.test');
  });

  it('admin.socket: defaults to admin.sock in dataDir and group keywarden-admin; bad values name the field', () => {
    const c = validateConfig(doc([scope()], { dataDir: '/var/lib/kw' }), { source: 't', baseDir: '/e' });
    assert.deepEqual(c.admin.socket, { path: '/var/lib/kw/admin.sock', group: 'keywarden-admin' });
    const custom = validateConfig(
      doc([scope()], { admin: { socket: { path: '/run/kw/a.sock', group: null } } }),
      { source: 't', baseDir: '/e' },
    );
    assert.deepEqual(custom.admin.socket, { path: '/run/kw/a.sock', group: null });
    const off = validateConfig(doc([scope()], { admin: { socket: null } }), { source: 't', baseDir: '/e' });
    assert.equal(off.admin.socket, null);
    for (const [admin, path] of [
      [{ socket: { group: 'no spaces allowed' } }, 'admin.socket.group'],
      [{ socket: { group: '' } }, 'admin.socket.group'],
      [{ socket: { path: 7 } }, 'admin.socket.path'],
      [{ socket: { path: '/a.sock', mode: '0666' } }, 'admin.socket'],
      [{ sockets: {} }, 'admin'],
    ] as const) {
      const ps = problems(doc([scope()], { admin }));
      assert.deepEqual(
        ps.map((p) => p.path),
        [path],
        JSON.stringify(admin),
      );
    }
  });

  it('KEYWARDEN_ADMIN_SOCKET overrides admin.socket.path, also where the file turned the socket off', () => {
    const yaml = `backends:\n  hsm: {type: pkcs11, module: /m.so, tokenLabel: t, pin: {env: P}}\nscopes:\n  - {name: a, issuer: 'https://a', audiences: [x], alg: ES256, backend: hsm, policy: {prepublish: 10m, activeFor: 1d, verifyGrace: 1h, maxTokenTtl: 15m, destroyAfter: 1d, maxKeyLifetime: 2d}}\n`;
    const env = { KEYWARDEN_ADMIN_SOCKET: '/run/kw/2.sock' };
    assert.equal(parseConfigText(yaml, '/etc/k/c.yaml', env).admin.socket?.path, '/run/kw/2.sock');
    const off = `${yaml}admin: {socket: null}\n`;
    assert.deepEqual(parseConfigText(off, '/etc/k/c.yaml', env).admin.socket, {
      path: '/run/kw/2.sock',
      group: 'keywarden-admin',
    });
  });

  it('parses durations strictly', () => {
    assert.equal(parseDurationSeconds('1h30m'), 5400);
    assert.equal(parseDurationSeconds('2w'), 1209600);
    for (const bad of ['60', '1.5h', '1y', '', ' 1h', '1h ', '-1h', '1M'])
      assert.equal(parseDurationSeconds(bad), undefined, bad);
  });
});
