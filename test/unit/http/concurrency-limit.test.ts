import * as assert from 'node:assert/strict';
import { ConcurrencyLimit } from '../../../src/http/concurrency-limit';

describe('ConcurrencyLimit (bounds scrypt work a flood of wrong secrets can cause)', () => {
  it('runs at most max at once, queues up to maxQueue, refuses the rest with RATE_LIMITED, and finishes the queue', async () => {
    const limit = new ConcurrencyLimit(4, 10, 'checks');
    let running = 0;
    let peak = 0;
    const release: (() => void)[] = [];
    const task = () =>
      new Promise<number>((resolve) => {
        running++;
        peak = Math.max(peak, running);
        release.push(() => {
          running--;
          resolve(1);
        });
      });
    const accepted = Array.from({ length: 14 }, () => limit.run(task));
    const refused = Array.from({ length: 5 }, () => limit.run(task));
    for (const r of refused) await assert.rejects(r, { code: 'RATE_LIMITED' });
    await new Promise((r) => setImmediate(r));
    assert.equal(running, 4);
    while (release.length > 0) {
      release.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(await Promise.all(accepted), Array(14).fill(1));
    assert.equal(peak, 4);
    // The slots came back: a new task runs at once.
    assert.equal(await limit.run(async () => 7), 7);
  });

  it('frees the slot when a task fails', async () => {
    const limit = new ConcurrencyLimit(1, 0, 'checks');
    await assert.rejects(
      limit.run(async () => Promise.reject(new Error('x'))),
      /x/,
    );
    assert.equal(await limit.run(async () => 2), 2);
  });
});
