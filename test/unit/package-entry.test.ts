import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const PACKAGE = join(ROOT, 'packages', 'verify');

interface ConditionalEntry {
  import: { types: string; default: string };
  require: { types: string; default: string };
}

/**
 * The relying-party library is the workspace package @keywarden/verify: its entry points name
 * files its build produces (`npm run build` builds it first), CommonJS and ES modules each with
 * types, and the daemon (a private package) exports nothing.
 */
describe('package entry points', () => {
  const pkg = JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8')) as {
    name: string;
    engines: { node: string };
    dependencies?: Record<string, string>;
    exports: Record<string, ConditionalEntry | string>;
  };
  const entries = Object.entries(pkg.exports).filter(
    (e): e is [string, ConditionalEntry] => typeof e[1] !== 'string',
  );

  it('@keywarden/verify: every export exists in the build output, for import and require, with types', () => {
    assert.equal(pkg.name, '@keywarden/verify');
    assert.deepEqual(
      entries.map(([name]) => name),
      ['.', './fastify', './express'],
    );
    for (const [, e] of entries) {
      for (const f of [e.import.types, e.import.default, e.require.types, e.require.default]) {
        assert.ok(existsSync(join(PACKAGE, f)), `${f} is not produced by the build`);
      }
    }
  });

  it('has no dependencies and states the Node versions it supports', () => {
    assert.equal(pkg.dependencies, undefined);
    assert.match(pkg.engines.node, /^>=\d+/);
  });

  it('loads as CommonJS and as an ES module, each offering createVerifier and the middleware', () => {
    const probe = (type: 'commonjs' | 'module') =>
      execFileSync(
        process.execPath,
        [
          '--input-type',
          type,
          '-e',
          type === 'module'
            ? "import * as v from '@keywarden/verify'; import * as f from '@keywarden/verify/fastify'; import * as x from '@keywarden/verify/express'; console.log(typeof v.createVerifier, typeof f.keywardenAuth, typeof x.keywardenAuth)"
            : "const v = require('@keywarden/verify'); const f = require('@keywarden/verify/fastify'); const x = require('@keywarden/verify/express'); console.log(typeof v.createVerifier, typeof f.keywardenAuth, typeof x.keywardenAuth)",
        ],
        { cwd: ROOT, encoding: 'utf8' },
      ).trim();
    assert.equal(probe('commonjs'), 'function function function');
    assert.equal(probe('module'), 'function function function');
  });

  it('the daemon package is private and exports no library of its own', () => {
    const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(root.private, true);
    assert.equal(root.exports, undefined);
    assert.equal((root.dependencies as Record<string, string>)['@keywarden/verify'], '0.1.0');
  });
});
