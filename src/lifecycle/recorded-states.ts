import type { KeyStore } from './ports';

/**
 * The state reconcile last recorded in the audit log for each key row (`last_state`), as this
 * process knows it: read from the store once, then kept current by this process's reconciles
 * (what they read and what they write). It lets the scheduler see without the store that a scope
 * has no state transition to record (reconcile-due.ts). Writes to `last_state` do not move the
 * key set version, so what another process records (or a revocation, which records its own
 * transition) is not seen here: a lagging entry only sends its scope to one full reconcile, which
 * reads the column and corrects the entry. One per process, across config reloads (rows outlive
 * configs).
 */
export class RecordedStates {
  private readonly states = new Map<string, string | null>();
  private loading: Promise<void> | null = null;

  constructor(private readonly keys: Pick<KeyStore, 'allLastStates'>) {}

  /** Reads every row's recorded state, once per process; later calls share that read. */
  ensureLoaded(): Promise<void> {
    this.loading ??= this.keys.allLastStates().then(
      (all) => {
        // What a reconcile noted while the read ran is at least as new as the read.
        for (const [id, state] of all) if (!this.states.has(id)) this.states.set(id, state);
      },
      (e: unknown) => {
        this.loading = null;
        throw e;
      },
    );
    return this.loading;
  }

  /** The row's recorded state: null when none was recorded, undefined when this process does not know. */
  get(keyId: string): string | null | undefined {
    return this.states.get(keyId);
  }

  /** What a reconcile of this process read from, or wrote to, the row's `last_state`. */
  note(keyId: string, state: string | null): void {
    this.states.set(keyId, state);
  }
}
