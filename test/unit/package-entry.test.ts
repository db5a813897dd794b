import * as assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

/**
 * The package's entry points name files the build produces (`npm run build`, which
 * scripts/test.sh runs first): `keywarden` and `keywarden/verify` are the relying-party library.
 */
describe('package.json entry points', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    main: string;
    types: string;
    exports: Record<string, { types: string; default: string }>;
  };

  it('main, types and every export exist in the build output', () => {
    const files = [pkg.main, pkg.types, ...Object.values(pkg.exports).flatMap((e) => [e.types, e.default])];
    for (const f of files) assert.ok(existsSync(join(ROOT, f)), `${f} is not produced by the build`);
  });

  it('`keywarden` resolves to the verify library, which loads and offers createVerifier', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const lib = require(join(ROOT, pkg.exports['.']!.default)) as { createVerifier?: unknown };
    assert.equal(typeof lib.createVerifier, 'function');
  });
});
