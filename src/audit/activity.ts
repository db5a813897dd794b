import type { Logger } from 'pino';
import type { AuditEvent } from '../policy/audit-events';
import type { Clock } from '../policy/clock';
import type { Store } from '../lifecycle/ports';

/** What the request audit needs: the store (to write several records in one transaction), clock, log. */
interface ActivityContext {
  store: Pick<Store, 'transaction'>;
  clock: Clock;
  log: Logger;
}

const MINUTE_MS = 60_000;
/** Queued denied-request records kept while the store cannot be written. */
const MAX_BACKLOG = 10_000;
const minuteOf = (ms: number): number => Math.floor(ms / MINUTE_MS) * MINUTE_MS;

/** Writes events in one transaction; never throws (audit trouble must not fail requests). */
async function writeAll(ctx: ActivityContext, events: AuditEvent[]): Promise<boolean> {
  if (events.length === 0) return true;
  try {
    await ctx.store.transaction(async (tx) => {
      for (const e of events) await tx.audit.record(e);
    });
    return true;
  } catch (e) {
    ctx.log.error(
      { err: (e as Error).message, records: events.length },
      'writing request audit records failed',
    );
    return false;
  }
}

/** One signed token, as the sign route knows it after signing. */
export interface SignActivity {
  scope: string;
  kid: string;
  /** The API client id (or name) that asked. */
  client: string;
  /** The token's `jti`. Never the token itself. */
  jti: string;
}

interface SignBucket extends SignActivity {
  /** Its key in the aggregator's map. */
  key: string;
  minute: number;
  count: number;
  firstJti: string;
  lastJti: string;
  firstAt: number;
  lastAt: number;
}

/**
 * Sign activity for the audit log without a write per token: counts per key, per client and per
 * minute, with the first and last `jti`, written as `sign.activity` records once the minute is
 * over. `note` is O(1) and in memory, so the sign path never waits on the store or the chain.
 *
 * Use: `const a = new SignActivityAggregator(ctx); a.start();` then `a.note({...})` after each
 * successful sign; `await a.stop()` on shutdown writes what is left.
 */
export class SignActivityAggregator {
  private buckets = new Map<string, SignBucket>();
  /** The bucket the last token went to. */
  private last: SignBucket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<number> = Promise.resolve(0);

  constructor(
    private readonly ctx: ActivityContext,
    private readonly opts: { tickSeconds?: number } = {},
  ) {}

  note(a: SignActivity): void {
    const now = this.ctx.clock.now().getTime();
    const minute = minuteOf(now);
    // Consecutive tokens nearly always share the bucket: compare four fields before building and
    // hashing a key. The bucket must still be the map's (a flush may have taken it since).
    let b = this.last;
    if (
      b === null ||
      b.minute !== minute ||
      b.scope !== a.scope ||
      b.kid !== a.kid ||
      b.client !== a.client ||
      this.buckets.get(b.key) !== b
    ) {
      const key = `${minute}\u0000${a.scope}\u0000${a.kid}\u0000${a.client}`;
      b = this.buckets.get(key) ?? null;
      if (!b) {
        b = { ...a, key, minute, count: 0, firstJti: a.jti, lastJti: a.jti, firstAt: now, lastAt: now };
        this.buckets.set(key, b);
      }
      this.last = b;
    }
    b.count += 1;
    b.lastJti = a.jti;
    b.lastAt = now;
  }

  /** Buckets not yet written (for tests and metrics). */
  get pending(): number {
    return this.buckets.size;
  }

  /** Writes the buckets of finished minutes (every bucket with `all`); returns records written. */
  flush(all = false): Promise<number> {
    this.flushing = this.flushing.then(() => this.doFlush(all));
    return this.flushing;
  }

  private async doFlush(all: boolean): Promise<number> {
    const current = minuteOf(this.ctx.clock.now().getTime());
    const taken: [string, SignBucket][] = [...this.buckets].filter(([, b]) => all || b.minute < current);
    if (taken.length === 0) return 0;
    for (const [k] of taken) this.buckets.delete(k);
    const events: AuditEvent[] = taken.map(([, b]) => ({
      type: 'sign.activity',
      actor: `client:${b.client}`,
      scope: b.scope,
      kid: b.kid,
      data: {
        minute: new Date(b.minute).toISOString(),
        count: b.count,
        firstJti: b.firstJti,
        lastJti: b.lastJti,
        firstAt: new Date(b.firstAt).toISOString(),
        lastAt: new Date(b.lastAt).toISOString(),
      },
    }));
    if (await writeAll(this.ctx, events)) return events.length;
    // Keep the counts for the next attempt rather than lose them.
    for (const [k, b] of taken) {
      const now = this.buckets.get(k);
      if (!now) this.buckets.set(k, b);
      else {
        now.count += b.count;
        now.firstJti = b.firstJti;
        now.firstAt = b.firstAt;
      }
    }
    return 0;
  }

  /** Flushes finished minutes every `tickSeconds` (default 10). The timer never keeps the process alive. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), (this.opts.tickSeconds ?? 10) * 1000);
    this.timer.unref();
  }

  /** Stops the timer and writes every remaining bucket. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush(true);
  }
}

/** A refused request (401/403), as the HTTP layer knows it. Never the credential itself. */
export interface DeniedRequest {
  status: 401 | 403;
  /** Remote address. */
  ip: string;
  /** The authenticated (403) or claimed (401) client id, when there is one. */
  client?: string | null;
  scope?: string | null;
  /** e.g. `POST /v1/scopes/:scope/sign`. */
  route: string;
  /** Short machine-readable reason, e.g. `bad-credentials`, `no-sign-grant`. */
  reason: string;
}

export interface DeniedRecorderOptions {
  /** Records per client-or-IP per minute before only a summary is kept (default 5). */
  perSubjectPerMinute?: number;
  /** Records per minute over all subjects (default 100): a spray from many IPs stays bounded. */
  totalPerMinute?: number;
  /** Distinct subjects tracked per minute; the rest share one summary (default 10000). */
  maxSubjects?: number;
  /** How often queued records are written, seconds (default 5). */
  tickSeconds?: number;
}

interface SubjectCount {
  recorded: number;
  suppressed: number;
  statuses: Record<string, number>;
}

/**
 * Audit records for refused requests, rate-limited so a flood cannot flood the chain: at most
 * `perSubjectPerMinute` `access.denied` records per client (403) or IP (401) per minute, and
 * `totalPerMinute` overall; everything beyond is counted and written once per subject as an
 * `access.denied-summary` when the minute ends. `recordDenied` is synchronous and in memory.
 */
export class DeniedRecorder {
  private minute = 0;
  private counts = new Map<string, SubjectCount>();
  private total = 0;
  private queue: AuditEvent[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<number> = Promise.resolve(0);

  constructor(
    private readonly ctx: ActivityContext,
    private readonly opts: DeniedRecorderOptions = {},
  ) {}

  recordDenied(d: DeniedRequest): void {
    const now = this.ctx.clock.now().getTime();
    this.roll(minuteOf(now));
    let subject = d.status === 403 && d.client ? `client:${d.client}` : `ip:${d.ip}`;
    if (!this.counts.has(subject) && this.counts.size >= (this.opts.maxSubjects ?? 10_000))
      subject = 'overflow';
    let c = this.counts.get(subject);
    if (!c) this.counts.set(subject, (c = { recorded: 0, suppressed: 0, statuses: {} }));
    if (c.recorded < (this.opts.perSubjectPerMinute ?? 5) && this.total < (this.opts.totalPerMinute ?? 100)) {
      c.recorded += 1;
      this.total += 1;
      this.queue.push({
        type: 'access.denied',
        actor: subject,
        scope: d.scope ?? null,
        data: {
          status: d.status,
          ip: d.ip,
          client: d.client ?? null,
          route: d.route,
          reason: d.reason,
          at: new Date(now).toISOString(),
        },
      });
    } else {
      c.suppressed += 1;
      c.statuses[String(d.status)] = (c.statuses[String(d.status)] ?? 0) + 1;
    }
  }

  /** Closes the minute when time moved on: suppressed counts become summary records. */
  private roll(minute: number, force = false): void {
    if (minute === this.minute && !force) return;
    for (const [subject, c] of this.counts) {
      if (c.suppressed === 0) continue;
      this.queue.push({
        type: 'access.denied-summary',
        actor: subject,
        data: { minute: new Date(this.minute).toISOString(), suppressed: c.suppressed, statuses: c.statuses },
      });
    }
    this.counts = new Map();
    this.total = 0;
    this.minute = minute;
  }

  /** Writes queued records (and, with `all`, the current minute's summaries); returns records written. */
  flush(all = false): Promise<number> {
    this.flushing = this.flushing.then(async () => {
      this.roll(minuteOf(this.ctx.clock.now().getTime()), all);
      const events = this.queue;
      this.queue = [];
      if (await writeAll(this.ctx, events)) return events.length;
      // Retry next time, but never hold more than a bounded backlog while the store is down.
      this.queue = [...events, ...this.queue].slice(-MAX_BACKLOG);
      return 0;
    });
    return this.flushing;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), (this.opts.tickSeconds ?? 5) * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush(true);
  }
}
