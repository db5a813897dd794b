import * as assert from 'node:assert/strict';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { collectStartupGarbage } from '../../src/startup-garbage';

describe('the full garbage collection before serving', () => {
  it('collects what a key load left behind, without giving the daemon a gc global', () => {
    // ~50 MiB that survives a few young collections (as a large key load's temporaries do), then dies.
    const load = (): number =>
      Array.from({ length: 300 }, (_, i) =>
        Array.from({ length: 1000 }, (_, j) => `row ${i}-${j} `.repeat(10)),
      ).length;
    assert.equal(load(), 300);
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(l) });
    const r = collectStartupGarbage(log);
    assert.ok(r, 'no collection ran');
    assert.ok(r.beforeMiB - r.afterMiB >= 25, `collected only ${r.beforeMiB - r.afterMiB} MiB`);
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
    assert.equal(runInNewContext('typeof gc'), 'undefined', 'a context made afterwards has a gc global');
    assert.ok(lines.some((l) => l.includes('start-up garbage collected before serving')));
  });
});
