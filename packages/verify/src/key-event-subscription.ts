import { insecureUrlProblem } from './fetch-document.js';
import { KEY_EVENT_NAME, parseKeyEvent, type KeyEvent } from './key-events.js';
import { SseReader } from './sse-reader.js';

export interface KeyEventSubscriptionOptions {
  /** The scope's key-events URL. */
  url: string;
  fetch: typeof fetch;
  allowInsecureHttp: boolean;
  /** Called with every well-formed key event, in order. */
  onEvent(event: KeyEvent): void;
  /**
   * Nothing at all (not even a heartbeat) for this long means the stream is dead though its
   * connection looks open (a proxy or NAT dropped it silently): it is reopened.
   */
  idleTimeoutMs: number;
  /** First reconnect delay; doubled per failure up to maxRetryMs, jittered. */
  retryMs: number;
  maxRetryMs: number;
}

/** Bound on one SSE line or event: a key event lists kids, well below this. */
const MAX_EVENT_BYTES = 64 * 1024;

/**
 * A subscription to a scope's key-set change stream: reconnects with backoff (and
 * `Last-Event-ID`, so the daemon sends at once a change made while it was away), treats a silent
 * stream as a dead one, and never throws. While it is down, the verifier works as without it,
 * refreshing its keys as the JWKS's Cache-Control says.
 */
export class KeyEventSubscription {
  private closed = false;
  private controller: AbortController | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private serverRetryMs: number | null = null;
  /** True while a stream is open and has answered 200 text/event-stream. */
  connected = false;
  /** The id of the last event received (the JWKS ETag it announced). */
  lastEventId: string | null = null;
  /** Key events received. */
  events = 0;
  /** Why the last connection attempt or stream ended, when it did. */
  lastProblem: string | null = null;

  constructor(private readonly options: KeyEventSubscriptionOptions) {}

  get url(): string {
    return this.options.url;
  }

  start(): void {
    if (this.closed || this.controller || this.retryTimer) return;
    void this.run();
  }

  close(): void {
    this.closed = true;
    this.connected = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.controller?.abort();
    this.controller = null;
  }

  private async run(): Promise<void> {
    const problem = await this.connectOnce();
    this.controller = null;
    this.connected = false;
    if (this.closed) return;
    this.lastProblem = problem;
    this.failures += 1;
    const base = this.serverRetryMs ?? this.options.retryMs;
    const exp = Math.min(this.options.maxRetryMs, base * 2 ** Math.min(this.failures - 1, 16));
    // Jitter: a daemon restart must not bring every relying party back in the same instant.
    const delay = Math.round(exp * (0.5 + Math.random() * 0.5));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.run();
    }, delay);
    this.retryTimer.unref();
  }

  /** One connection, until it ends; resolves with why it ended. Never rejects. */
  private async connectOnce(): Promise<string> {
    const { url } = this.options;
    const insecure = insecureUrlProblem(url, this.options.allowInsecureHttp);
    if (insecure) return insecure;
    const controller = new AbortController();
    this.controller = controller;
    let idle: NodeJS.Timeout | null = null;
    const armIdle = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(
        () => controller.abort(new Error('no event or heartbeat in time')),
        this.options.idleTimeoutMs,
      );
      idle.unref();
    };
    try {
      armIdle();
      const headers: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-cache' };
      if (this.lastEventId !== null) headers['last-event-id'] = this.lastEventId;
      const res = await this.options.fetch(url, { headers, signal: controller.signal });
      const redirected = res.url ? insecureUrlProblem(res.url, this.options.allowInsecureHttp) : undefined;
      const type = res.headers.get('content-type') ?? '';
      if (redirected || res.status !== 200 || !/^text\/event-stream\b/i.test(type) || !res.body) {
        await res.body?.cancel().catch(() => undefined);
        if (redirected) return `redirected: ${redirected}`;
        return `GET ${url} answered HTTP ${res.status} ${type}`.trim();
      }
      this.connected = true;
      // Only a refused or failed connection backs off further; an open stream starts over.
      this.failures = 0;
      let ended = 'the stream ended';
      const reader = new SseReader({
        maxBytes: MAX_EVENT_BYTES,
        onRetry: (ms) => {
          this.serverRetryMs = ms;
        },
        onEvent: (e) => {
          if (e.event !== KEY_EVENT_NAME) return;
          const event = parseKeyEvent(e.data);
          if (!event) return;
          this.lastEventId = e.lastEventId || event.etag;
          this.events += 1;
          this.options.onEvent(event);
        },
      });
      const decoder = new TextDecoder();
      const body = res.body.getReader();
      for (;;) {
        const { done, value } = await body.read();
        if (done) break;
        armIdle();
        if (!reader.push(decoder.decode(value, { stream: true }))) {
          ended = `an event larger than ${MAX_EVENT_BYTES} bytes`;
          await body.cancel().catch(() => undefined);
          break;
        }
      }
      return ended;
    } catch (e) {
      if (controller.signal.aborted && controller.signal.reason instanceof Error)
        return controller.signal.reason.message;
      return `GET ${url} failed: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      if (idle) clearTimeout(idle);
    }
  }
}
