import pino, { type Logger } from 'pino';

/**
 * Structured JSON logs, one line per event. Secrets never reach a log line: the paths below
 * are redacted wherever they appear, and code never logs PINs, client secrets or token bodies.
 */
export const REDACT_PATHS = [
  'pin',
  '*.pin',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'password',
  '*.password',
];

export function createLogger(level: string, destination: 1 | 2 = 1): Logger {
  return pino(
    {
      level,
      base: { service: 'keywarden', pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: destination, sync: destination === 2 }),
  );
}
