/**
 * Profiles reconcile passes over N scopes in this process (`node -r tsx/cjs
 * bench/profile/reconcile.ts N [zero-cost|zero-cost-no-reload]`): a pass with nothing due, then one with a rotation due in
 * every scope. Writes .tmp/bench/reconcile-*.cpuprofile and prints the top self-time functions.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { reconcileScope } from '../../src/lifecycle/reconcile-scope';
import { openRuntime, storeAuditLog } from '../../src/main';
import { FakeClock } from '../../src/policy/clock';
import { STEADY_POLICY } from '../lib/bench-policy';
import { prepareKeywarden } from '../lib/keywarden';
import { REPO_ROOT } from '../lib/processes';
import { profiled } from '../lib/profile';
import { MemoryBackend } from '../../test/helpers/fakes';
import { ensureCompiled } from '../lib/build';

async function main(): Promise<void> {
  ensureCompiled();
  const n = Number(process.argv[2] ?? 1000);
  const dir = join(REPO_ROOT, '.tmp', 'bench');
  mkdirSync(dir, { recursive: true });
  const kw = await prepareKeywarden({
    scopes: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, policy: STEADY_POLICY })),
    sessions: 4,
    init: false,
  });
  const clock = new FakeClock(Date.now());
  const zeroCost = process.argv[3] === 'zero-cost' || process.argv[3] === 'zero-cost-no-reload';
  const noReload = process.argv[3] === 'zero-cost-no-reload';
  const rt = await openRuntime(kw.config, {
    clock,
    log: pino({ level: 'silent' }),
    audit: storeAuditLog(),
    ...(zeroCost ? { openBackend: async () => new MemoryBackend('hsm') } : {}),
  });
  // BENCHMARK ONLY: isolates what else a pass costs besides the key-cache reloads.
  if (noReload) rt.ctx.cache.refresh = async () => undefined;
  const pass = async () => {
    const t = Date.now();
    const r = await Promise.all(kw.config.scopes.map((s) => reconcileScope(rt.ctx, s.name, 'profile')));
    return {
      ms: Date.now() - t,
      created: r.reduce((k, x) => k + x.done.length, 0),
      errors: r.reduce((k, x) => k + x.errors.length, 0),
    };
  };
  try {
    const first = await profiled(join(dir, `reconcile-first-${n}.cpuprofile`), pass);
    console.log('first keys', first.value, '\n  ' + first.top.join('\n  '));
    const idle = await profiled(join(dir, `reconcile-idle-${n}.cpuprofile`), pass);
    console.log('nothing due', idle.value, '\n  ' + idle.top.join('\n  '));
    clock.advanceSeconds(24 * 3600 - 10 * 60 + 1);
    const rot = await profiled(join(dir, `reconcile-rotation-${n}.cpuprofile`), pass);
    console.log('rotation due', rot.value, '\n  ' + rot.top.join('\n  '));
  } finally {
    await rt.close();
    await kw.cleanup();
  }
}
void main().then(() => process.exit(0));
