import * as assert from 'node:assert/strict';
import { requireScope } from '../../../src/lifecycle/context';
import { hasCode } from '../../../src/policy/errors';
import type { KeywardenConfig, ScopeConfig } from '../../../src/policy/scope';

const configOf = (n: number) =>
  ({
    scopes: Array.from({ length: n }, (_, i) => ({ name: `tenant-${i}` }) as ScopeConfig),
  }) as unknown as KeywardenConfig;

describe('requireScope', () => {
  it('finds a scope among 100,000 by name', () => {
    const config = configOf(100_000);
    assert.equal(requireScope({ config }, 'tenant-99999'), config.scopes[99_999]);
  });

  it('names a few configured scopes for an unknown one, never all: the 404 stays small', () => {
    const caught = (n: number) => {
      try {
        requireScope({ config: configOf(n) }, 'nope');
      } catch (e) {
        assert.ok(hasCode(e, 'SCOPE_NOT_FOUND'));
        return (e as Error).message;
      }
      return assert.fail('found an unknown scope');
    };
    assert.equal(caught(3), 'unknown scope "nope" (configured: tenant-0, tenant-1, tenant-2)');
    assert.equal(caught(0), 'unknown scope "nope" (configured: none)');
    const big = caught(100_000);
    assert.match(big, /tenant-9 and 99990 more\)$/);
    assert.ok(big.length < 300, `${big.length} characters`);
  });
});
