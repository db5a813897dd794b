import { Writable } from 'node:stream';
import pino from 'pino';

/** A pino logger at `info` whose lines the test can read back, parsed. */
export function captureLog(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return {
    log: pino({ level: 'info' }, sink),
    lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
