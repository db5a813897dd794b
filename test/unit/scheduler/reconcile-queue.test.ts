import * as assert from 'node:assert/strict';
import { ReconcileQueue } from '../../../src/scheduler/reconcile-queue';

/** A run per scope that the test ends by hand, recording the order runs start in. */
class Runs {
  readonly started: string[] = [];
  private readonly ends = new Map<string, (() => void)[]>();
  active = 0;
  maxActive = 0;
  run = (scope: string): Promise<void> => {
    this.started.push(scope);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    return new Promise<void>((resolve) => {
      const list = this.ends.get(scope) ?? [];
      list.push(() => {
        this.active--;
        resolve();
      });
      this.ends.set(scope, list);
    });
  };
  /** Ends the scope's oldest unfinished run, then lets the queue react. */
  async end(scope: string): Promise<void> {
    const end = this.ends.get(scope)?.shift();
    assert.ok(end, `${scope} is not running`);
    end();
    await tick();
  }
  async endAll(): Promise<void> {
    for (const [scope, list] of this.ends) while (list.length > 0) await this.end(scope);
  }
}
const tick = () => new Promise<void>((r) => setImmediate(r));

describe('ReconcileQueue', () => {
  it('runs at most `concurrency` at once and every scope once', async () => {
    const runs = new Runs();
    const q = new ReconcileQueue(3, runs.run);
    const done = Array.from({ length: 10 }, (_, i) => q.enqueue(`s${i}`, 'due'));
    await tick();
    assert.equal(runs.active, 3);
    assert.equal(q.queuedCount, 7);
    while (runs.started.length < 10 || runs.active > 0) {
      const running = runs.started.filter((s) => q.pending(s) !== undefined);
      await runs.end(running[0]!);
    }
    await Promise.all(done);
    assert.equal(runs.maxActive, 3);
    assert.deepEqual([...runs.started].sort(), Array.from({ length: 10 }, (_, i) => `s${i}`).sort());
  });

  it('starts due runs before queued heartbeats, and a due request promotes a queued heartbeat', async () => {
    const runs = new Runs();
    const q = new ReconcileQueue(1, runs.run);
    void q.enqueue('busy', 'due');
    for (const s of ['h1', 'h2', 'h3']) void q.enqueue(s, 'heartbeat');
    void q.enqueue('d1', 'due');
    void q.enqueue('h3', 'due');
    await tick();
    await runs.end('busy');
    await runs.end('d1');
    await runs.end('h3');
    await runs.end('h1');
    await runs.end('h2');
    assert.deepEqual(runs.started, ['busy', 'd1', 'h3', 'h1', 'h2']);
    assert.equal(q.queuedCount, 0);
  });

  it('never runs a scope twice at once; requests during a run become one more run after it', async () => {
    const runs = new Runs();
    const q = new ReconcileQueue(4, runs.run);
    const first = q.enqueue('a', 'heartbeat');
    await tick();
    const second = q.enqueue('a', 'heartbeat');
    const third = q.enqueue('a', 'due');
    assert.equal(second, third, 'folded into the one pending run');
    await tick();
    assert.deepEqual(runs.started, ['a']);
    assert.equal(runs.active, 1);
    await runs.end('a');
    await first;
    assert.deepEqual(runs.started, ['a', 'a']);
    await runs.end('a');
    await second;
    assert.equal(runs.maxActive, 1);
  });

  it('clear() drops queued requests (their promises settle without a run); idle() waits for runs in progress', async () => {
    const runs = new Runs();
    const q = new ReconcileQueue(1, runs.run);
    const a = q.enqueue('a', 'due');
    const b = q.enqueue('b', 'due');
    await tick();
    q.clear();
    await b;
    let idle = false;
    const waiting = q.idle().then(() => (idle = true));
    await tick();
    assert.equal(idle, false);
    await runs.end('a');
    await Promise.all([a, waiting]);
    assert.deepEqual(runs.started, ['a']);
  });

  it('a failing run frees its slot', async () => {
    const q = new ReconcileQueue(1, async (s) => {
      if (s === 'bad') throw new Error('boom');
    });
    await Promise.all([q.enqueue('bad', 'due'), q.enqueue('good', 'due')]);
    assert.equal(q.activeCount, 0);
  });

  it('refuses a bound below 1', () => {
    assert.throws(() => new ReconcileQueue(0, async () => undefined), RangeError);
  });
});
