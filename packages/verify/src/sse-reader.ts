/** One dispatched Server-Sent Event (WHATWG HTML §9.2.6). */
export interface SseEvent {
  /** `message` when the stream named none. */
  event: string;
  data: string;
  /** The last event id after this event (ids persist across events, as the spec says). */
  lastEventId: string;
}

export interface SseReaderOptions {
  onEvent(event: SseEvent): void;
  /** A `retry:` field: the server's reconnection delay in milliseconds. */
  onRetry?(ms: number): void;
  /** Longest line or event accepted; beyond it `push` returns false (the caller drops the stream). */
  maxBytes: number;
}

/**
 * An incremental `text/event-stream` parser: feed it decoded text as it arrives. Comment lines
 * (heartbeats) dispatch nothing. Written out because the stream is consumed over fetch, with
 * the caller's own headers and timeouts, which EventSource does not allow.
 */
export class SseReader {
  private buffer = '';
  private data: string[] = [];
  private dataBytes = 0;
  private eventName = '';
  private lastEventId = '';
  /** The previous chunk ended in CR: a LF starting this one belongs to the same line break. */
  private pendingCr = false;

  constructor(private readonly options: SseReaderOptions) {}

  /** Parses `text`; false when a line or event grew past maxBytes (stop reading then). */
  push(text: string): boolean {
    let s = text;
    if (this.pendingCr && s.startsWith('\n')) s = s.slice(1);
    this.pendingCr = false;
    this.buffer += s;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      if (m[0] === '\r' && m.index === this.buffer.length - 1) this.pendingCr = true;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      if (!this.line(line)) return false;
    }
    return this.buffer.length <= this.options.maxBytes;
  }

  private line(line: string): boolean {
    if (line === '') {
      this.dispatch();
      return true;
    }
    if (line.startsWith(':')) return true;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.eventName = value;
        break;
      case 'data':
        this.dataBytes += value.length + 1;
        if (this.dataBytes > this.options.maxBytes) return false;
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.options.onRetry?.(Number(value));
        break;
      default:
        break;
    }
    return true;
  }

  private dispatch(): void {
    const data = this.data;
    const event = this.eventName || 'message';
    this.data = [];
    this.dataBytes = 0;
    this.eventName = '';
    if (data.length === 0) return;
    this.options.onEvent({ event, data: data.join('\n'), lastEventId: this.lastEventId });
  }
}
