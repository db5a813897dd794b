import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigInvalidError, type ConfigProblem } from '../../../src/policy/errors';
import { configChanges } from '../../../src/policy/config-changes';
import { MAX_TENANT_PROBLEMS } from '../../../src/policy/scope-templates';
import { validateConfig } from '../../../src/config/validate-config';
import { parseConfigSnapshot } from '../../../src/config/load-config';
import type { KeywardenConfig } from '../../../src/policy/scope';
import { TEST_BACKENDS as backends, TEST_POLICY as policy, testScope } from '../../helpers/config-fixtures';

const scope = (over: Record<string, unknown> = {}) => testScope('demo', over);
const template = (over: Record<string, unknown> = {}) => ({
  name: 'tenants',
  namePattern: 'tenant-{tenant}',
  issuer: 'https://id.example.com/t/{tenant}',
  audiences: ['api://{tenant}', 'shared'],
  alg: 'ES256',
  backend: 'hsm',
  policy,
  tenants: ['acme', 'globex'],
  ...over,
});
const doc = (scopes: unknown[], scopeTemplates: unknown[], extra: Record<string, unknown> = {}) => ({
  backends,
  scopes,
  scopeTemplates,
  ...extra,
});
const validate = (raw: unknown, readTenantsFile?: (file: string) => string): KeywardenConfig =>
  validateConfig(raw, {
    source: 'test.yaml',
    baseDir: '/etc/keywarden',
    ...(readTenantsFile ? { readTenantsFile } : {}),
  });

function problems(raw: unknown, readTenantsFile?: (file: string) => string): readonly ConfigProblem[] {
  try {
    validate(raw, readTenantsFile);
  } catch (e) {
    assert.ok(e instanceof ConfigInvalidError, `expected ConfigInvalidError, got ${e}`);
    return e.problems;
  }
  assert.fail('config was accepted');
}

describe('scope templates', () => {
  it('expand to ordinary scopes, {tenant} filled in the name, issuer and audiences, after the explicit scopes', () => {
    const c = validate(doc([scope()], [template()]));
    assert.deepEqual(
      c.scopes.map((s) => [s.name, s.issuer, s.audiences]),
      [
        ['demo', 'https://issuer.test/demo', ['api']],
        ['tenant-acme', 'https://id.example.com/t/acme', ['api://acme', 'shared']],
        ['tenant-globex', 'https://id.example.com/t/globex', ['api://globex', 'shared']],
      ],
    );
    const acme = c.scopes[1]!;
    // The scope defaults and the policy in seconds, as for an explicit scope; frozen like it.
    assert.equal(acme.schedule, '* * * * *');
    assert.equal(acme.production, true);
    assert.equal(acme.rsaBits, 2048);
    assert.equal(acme.policy.prepublishSeconds, 600);
    assert.equal(acme.policy.jwksMaxAgeSeconds, 300);
    assert.ok(Object.isFrozen(acme) && Object.isFrozen(acme.audiences) && Object.isFrozen(acme.policy));
    assert.equal('tenants' in acme || 'namePattern' in acme, false);
  });

  it('may stand alone: a config of templates only is valid; with neither scopes nor templates it is not', () => {
    const c = validate({ backends, scopeTemplates: [template({ tenants: ['a'] })] });
    assert.deepEqual(
      c.scopes.map((s) => s.name),
      ['tenant-a'],
    );
    const ps = problems({ backends });
    assert.deepEqual(
      ps.map((p) => p.path),
      ['scopes'],
    );
    assert.match(ps[0]!.message, /at least one scope \(or a scope template\)/);
  });

  it('refuses a name or issuer an explicit scope or another template already has, naming template and tenant', () => {
    const ps = problems(
      doc(
        [
          scope({ name: 'tenant-acme', issuer: 'https://issuer.test/x' }),
          scope({ issuer: 'https://id.example.com/t/globex' }),
        ],
        [
          template(),
          template({
            name: 'more',
            namePattern: 'tenant-{tenant}',
            issuer: 'https://more.example.com/{tenant}',
            tenants: ['initech', 'globex'],
          }),
        ],
      ),
    );
    assert.deepEqual(
      ps.map((p) => [p.path, p.scope]),
      [
        ['scopeTemplates[0].tenants[0]', 'tenant-acme'],
        ['scopeTemplates[0].tenants[1]', 'tenant-globex'],
        ['scopeTemplates[1].tenants[1]', 'tenant-globex'],
      ],
    );
    assert.match(
      ps[0]!.message,
      /^template "tenants", tenant "acme": scope name "tenant-acme" is already declared by scopes\[0\]/,
    );
    assert.match(
      ps[1]!.message,
      /issuer https:\/\/id\.example\.com\/t\/globex is already used by scope demo/,
    );
    assert.match(
      ps[2]!.message,
      /^template "more", tenant "globex": scope name "tenant-globex" is already declared by template "tenants", tenant "globex"/,
    );
  });

  it('refuses bad tenant ids, a tenant listed twice and a name past 64 characters, each by its place', () => {
    const long = 'x'.repeat(60);
    const ps = problems(doc([], [template({ tenants: ['acme', 'Acme', 'a/b', 'acme', long] })]));
    assert.deepEqual(
      ps.map((p) => p.path),
      [
        'scopeTemplates[0].tenants[1]',
        'scopeTemplates[0].tenants[2]',
        'scopeTemplates[0].tenants[3]',
        'scopeTemplates[0].tenants[4]',
      ],
    );
    assert.match(ps[0]!.message, /tenant "Acme": tenant id must be a lowercase slug/);
    assert.match(ps[2]!.message, /tenant "acme": listed twice \(first at tenants\[0\]\)/);
    assert.match(ps[3]!.message, /scope name "tenant-x+" must be a lowercase slug/);
  });

  it('checks the shared settings once, at the template, with the rules of a scope', () => {
    const ps = problems(
      doc(
        [],
        [
          template({
            backend: 'nope',
            schedule: '0 0 31 2 *',
            policy: { ...policy, verifyGrace: '1m' },
            tenants: Array.from({ length: 50 }, (_, i) => `t${i}`),
          }),
        ],
      ),
    );
    assert.deepEqual(
      ps.map((p) => p.path),
      ['scopeTemplates[0].backend', 'scopeTemplates[0].schedule', 'scopeTemplates[0].policy.verifyGrace'],
    );
    assert.ok(ps.every((p) => p.message.startsWith('template "tenants": ')));
    assert.match(ps[2]!.message, /verifyGrace 1m must be >= maxTokenTtl 15m/);
  });

  it('refuses templates without {tenant}, with unknown placeholders, unknown fields, or a duplicate template name', () => {
    const ps = problems(
      doc(
        [],
        [
          template({ namePattern: 'fixed', issuer: 'https://id.example.com/{tenant}/{region}' }),
          template({
            issuer: 'https://two.example.com/{tenant}',
            namePattern: 'b-{tenant}',
            audiences: ['{aud}'],
          }),
          template({ name: 'c', tenant: ['a'] }),
        ],
      ),
    );
    assert.deepEqual(
      ps.map((p) => p.path),
      [
        'scopeTemplates[0].namePattern',
        'scopeTemplates[0].issuer',
        'scopeTemplates[1].name',
        'scopeTemplates[1].audiences[0]',
        'scopeTemplates[2]',
      ],
    );
    assert.match(ps[0]!.message, /must contain \{tenant\}/);
    assert.match(ps[1]!.message, /unknown placeholder \{region\}/);
    assert.match(ps[2]!.message, /duplicate template name \(also scopeTemplates\[0\]\)/);
    assert.match(ps[4]!.message, /tenant/);
  });

  it('refuses an issuer that is no URL once filled in, naming the tenant used', () => {
    const ps = problems(doc([], [template({ issuer: 'ftp://{tenant}.example.com' })]));
    assert.deepEqual(
      ps.map((p) => p.path),
      ['scopeTemplates[0].issuer'],
    );
    assert.match(ps[0]!.message, /must be an http\(s\) URL \(with \{tenant\} = "acme"\)/);
  });

  it('wants exactly one of tenants or tenantsFile, and at least one tenant', () => {
    const { tenants: _omit, ...noTenants } = template();
    const ps = problems(
      doc(
        [],
        [
          noTenants,
          template({
            name: 'b',
            namePattern: 'b-{tenant}',
            issuer: 'https://b/{tenant}',
            tenantsFile: 't.txt',
          }),
          template({ name: 'c', namePattern: 'c-{tenant}', issuer: 'https://c/{tenant}', tenants: [] }),
        ],
      ),
    );
    assert.deepEqual(
      ps.map((p) => p.path),
      ['scopeTemplates[0].tenants', 'scopeTemplates[1].tenantsFile', 'scopeTemplates[2].tenants'],
    );
    assert.match(ps[0]!.message, /exactly one of tenants/);
    assert.match(ps[2]!.message, /lists no tenants/);
  });

  it('lists the first problems with the tenants and counts the rest', () => {
    const tenants = Array.from({ length: 100 }, (_, i) => `T${i}`);
    const ps = problems(doc([], [template({ tenants })]));
    assert.equal(ps.length, MAX_TENANT_PROBLEMS + 1);
    assert.equal(ps[MAX_TENANT_PROBLEMS]!.path, 'scopeTemplates[0].tenants');
    assert.match(ps[MAX_TENANT_PROBLEMS]!.message, /80 more problems with its tenants/);
  });

  it('with server.tls, an http template issuer is refused once, at the template', () => {
    const ps = problems(
      doc([], [template({ issuer: 'http://id.example.com/{tenant}' })], {
        server: { tls: { certFile: 'c', keyFile: 'k' } },
      }),
    );
    assert.deepEqual(
      ps.map((p) => p.path),
      ['scopeTemplates[0].issuer'],
    );
    assert.match(ps[0]!.message, /issuers are https.*template "tenants"/);
  });

  it('a reload sees a tenant added to or removed from the list as a scope added or removed', () => {
    const before = validate(doc([scope()], [template()]));
    const after = validate(doc([scope()], [template({ tenants: ['acme', 'initech'] })]));
    const changes = configChanges(before, after);
    assert.deepEqual(changes.scopesAdded, ['tenant-initech']);
    assert.deepEqual(changes.scopesRemoved, ['tenant-globex']);
    assert.deepEqual(changes.scopesChanged, []);
    const policyChanged = validate(doc([scope()], [template({ policy: { ...policy, activeFor: '20h' } })]));
    assert.deepEqual(configChanges(before, policyChanged).scopesChanged, ['tenant-acme', 'tenant-globex']);
  });

  it('expands 100,000 tenants', () => {
    const tenants = Array.from({ length: 100_000 }, (_, i) => `t${i}`);
    const c = validate(doc([], [template({ tenants })]));
    assert.equal(c.scopes.length, 100_000);
    assert.equal(c.scopes[99_999]!.issuer, 'https://id.example.com/t/t99999');
  });

  describe('tenantsFile', () => {
    let dir: string;
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kw-tenants-'));
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    const yaml = (tenantsLine: string) =>
      [
        'backends:',
        '  hsm: {type: pkcs11, module: /m.so, tokenLabel: t, pin: {env: P}}',
        'scopeTemplates:',
        '  - name: tenants',
        "    namePattern: 'tenant-{tenant}'",
        "    issuer: 'https://id.example.com/t/{tenant}'",
        '    audiences: [api]',
        '    alg: ES256',
        '    backend: hsm',
        '    policy: {prepublish: 10m, activeFor: 1d, verifyGrace: 1h, maxTokenTtl: 15m, destroyAfter: 1d, maxKeyLifetime: 2d}',
        `    ${tenantsLine}`,
        '',
      ].join('\n');

    it('reads one tenant a line, relative to the config file, skipping blanks and # comments', () => {
      fs.mkdirSync(path.join(dir, 'lists'));
      const file = path.join(dir, 'lists', 'tenants.txt');
      fs.writeFileSync(file, '# our tenants\nacme\n\n  globex  # since 2026\n');
      const loaded = parseConfigSnapshot(
        { source: path.join(dir, 'c.yaml'), text: yaml('tenantsFile: lists/tenants.txt') },
        {},
      );
      assert.deepEqual(
        loaded.config.scopes.map((s) => s.name),
        ['tenant-acme', 'tenant-globex'],
      );
      assert.deepEqual(loaded.files, { [file]: fs.readFileSync(file, 'utf8') });
    });

    it('a snapshot with its files reads nothing from disk (what a cluster worker runs)', () => {
      const file = path.join(dir, 'tenants.txt');
      fs.writeFileSync(file, 'acme\n');
      const source = path.join(dir, 'c.yaml');
      const text = yaml('tenantsFile: tenants.txt');
      const first = parseConfigSnapshot({ source, text }, {});
      fs.writeFileSync(file, 'acme\nglobex\n');
      const again = parseConfigSnapshot({ source, text, files: first.files }, {});
      assert.deepEqual(
        again.config.scopes.map((s) => s.name),
        ['tenant-acme'],
      );
      assert.throws(
        () => parseConfigSnapshot({ source, text, files: {} }, {}),
        (e: unknown) =>
          e instanceof ConfigInvalidError &&
          e.problems.length === 1 &&
          e.problems[0]!.path === 'scopeTemplates[0].tenantsFile' &&
          /not among the files/.test(e.problems[0]!.message),
      );
    });

    it('names the line of a bad tenant, and refuses an unreadable or empty file', () => {
      fs.writeFileSync(path.join(dir, 'bad.txt'), 'acme\nNot_A_Slug\n');
      fs.writeFileSync(path.join(dir, 'empty.txt'), '# nobody yet\n\n');
      const source = path.join(dir, 'c.yaml');
      const problemsOf = (line: string) => {
        try {
          parseConfigSnapshot({ source, text: yaml(line) }, {});
        } catch (e) {
          assert.ok(e instanceof ConfigInvalidError);
          return e.problems;
        }
        assert.fail('accepted');
      };
      const bad = problemsOf('tenantsFile: bad.txt');
      assert.deepEqual(
        bad.map((p) => p.path),
        ['scopeTemplates[0].tenantsFile line 2'],
      );
      assert.match(bad[0]!.message, /tenant "Not_A_Slug": tenant id must be a lowercase slug/);
      const missing = problemsOf('tenantsFile: missing.txt');
      assert.match(missing[0]!.message, /cannot read .*missing\.txt: ENOENT/);
      assert.match(problemsOf('tenantsFile: empty.txt')[0]!.message, /lists no tenants/);
    });
  });
});
