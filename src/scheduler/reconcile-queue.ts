/**
 * How urgent a scope's reconcile is. `due`: a decision falls due now (a successor to create, a
 * key to destroy), a reload added or changed the scope, or start-up; `heartbeat`: the cron tick
 * that catches anything else. Due runs start before every queued heartbeat, so a shared cron
 * tick over 100,000 scopes cannot make a successor late.
 */
export type ReconcilePriority = 'due' | 'heartbeat';

interface Entry {
  scope: string;
  priority: ReconcilePriority;
  /** Waits for the scope's run in progress before it joins its list. */
  parked: boolean;
  done: Promise<void>;
  resolve(): void;
}

/**
 * Runs scopes' reconciles at most `concurrency` at a time: many scopes due at once (start-up, a
 * cron tick shared by every scope) become a steady stream instead of one burst of thousands of
 * store transactions, lock leases and backend calls. A scope is never queued or run twice at once:
 * asking again returns the pending run's promise (and a due request promotes a queued heartbeat).
 */
export class ReconcileQueue {
  private readonly due: Entry[] = [];
  private readonly heartbeat: Entry[] = [];
  /** Head indexes: entries before them were taken (arrays are compacted when half is taken). */
  private dueHead = 0;
  private heartbeatHead = 0;
  private readonly queued = new Map<string, Entry>();
  private readonly running = new Map<string, Promise<void>>();
  private active = 0;

  constructor(
    private readonly concurrency: number,
    /** One scope's reconcile; must never reject (the scheduler's runOnce catches and reports). */
    private readonly run: (scope: string) => Promise<void>,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be >= 1');
  }

  /** Queues the scope's reconcile; resolves when that run (or the one already pending) is done. */
  enqueue(scope: string, priority: ReconcilePriority): Promise<void> {
    const queued = this.queued.get(scope);
    if (queued) {
      if (priority === 'due' && queued.priority === 'heartbeat') {
        // Promoted: the heartbeat slot it leaves is skipped when reached.
        queued.priority = 'due';
        if (!queued.parked) this.due.push(queued);
      }
      return queued.done;
    }
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    // A run in progress may have read the store before the reason for this request: one more
    // run follows it (parked until it ends) rather than the request being folded into it.
    const entry: Entry = { scope, priority, parked: this.running.has(scope), done, resolve };
    this.queued.set(scope, entry);
    if (!entry.parked) {
      this.list(priority).push(entry);
      this.pump();
    }
    return done;
  }

  /** Runs in progress. */
  get activeCount(): number {
    return this.active;
  }

  /** Scopes waiting for a slot. */
  get queuedCount(): number {
    return this.queued.size;
  }

  /** The scope's run in progress or queued, if any. */
  pending(scope: string): Promise<void> | undefined {
    return this.queued.get(scope)?.done ?? this.running.get(scope);
  }

  /** Every run in progress and queued, settled. */
  async idle(): Promise<void> {
    while (this.active > 0 || this.queued.size > 0) {
      await Promise.all([...this.running.values(), ...[...this.queued.values()].map((e) => e.done)]);
    }
  }

  /** Drops every queued (not yet running) request; their promises resolve without a run. */
  clear(): void {
    for (const e of this.queued.values()) e.resolve();
    this.queued.clear();
    this.due.length = this.heartbeat.length = 0;
    this.dueHead = this.heartbeatHead = 0;
  }

  private pump(): void {
    while (this.active < this.concurrency) {
      const entry = this.take();
      if (!entry) return;
      this.start(entry);
    }
  }

  private list(priority: ReconcilePriority): Entry[] {
    return priority === 'due' ? this.due : this.heartbeat;
  }

  /** The next queued entry, a due one first. */
  private take(): Entry | undefined {
    for (const priority of ['due', 'heartbeat'] as const) {
      const list = this.list(priority);
      let head = priority === 'due' ? this.dueHead : this.heartbeatHead;
      let found: Entry | undefined;
      while (head < list.length && !found) {
        const e = list[head++]!;
        // Stale slots: taken already through the due list, or promoted away from this one.
        if (this.queued.get(e.scope) === e && e.priority === priority) found = e;
      }
      if (head === list.length) {
        list.length = 0;
        head = 0;
      } else if (head > 1024 && head * 2 > list.length) {
        list.splice(0, head);
        head = 0;
      }
      if (priority === 'due') this.dueHead = head;
      else this.heartbeatHead = head;
      if (found) return found;
    }
    return undefined;
  }

  private start(e: Entry): void {
    this.queued.delete(e.scope);
    this.active++;
    const run = this.run(e.scope)
      .catch(() => undefined)
      .finally(() => {
        this.active--;
        this.running.delete(e.scope);
        e.resolve();
        const next = this.queued.get(e.scope);
        if (next?.parked) {
          next.parked = false;
          this.list(next.priority).push(next);
        }
        this.pump();
      });
    this.running.set(e.scope, run);
  }
}
