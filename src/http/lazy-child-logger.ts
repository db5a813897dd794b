import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, Level, LevelWithSilentOrString, Logger } from 'pino';

/**
 * A request logger that becomes a real pino child only when something is logged. fastify
 * makes a child logger for every request to bind its `reqId`; with redaction configured that
 * costs ~6 µs, more than 1% of a sign request (measured with bench/profile/sign.ts), although
 * request logging is off and almost no request logs anything.
 */
class LazyChildLogger {
  private real: Logger | null = null;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
    private readonly opts: ChildLoggerOptions,
  ) {}

  get level(): LevelWithSilentOrString {
    return this.real?.level ?? this.parent.level;
  }

  set level(level: LevelWithSilentOrString) {
    this.materialise().level = level;
  }

  private materialise(): Logger {
    this.real ??= this.parent.child(this.bindings, this.opts);
    return this.real;
  }

  private write(level: Level, args: unknown[]): void {
    // A disabled level logs nothing, so it need not make the child either.
    if (this.real === null && !this.parent.isLevelEnabled(level)) return;
    (this.materialise()[level] as (...a: unknown[]) => void)(...args);
  }

  // Prototype methods, not per-instance closures: one of these is made for every request.
  fatal(...args: unknown[]): void {
    this.write('fatal', args);
  }
  error(...args: unknown[]): void {
    this.write('error', args);
  }
  warn(...args: unknown[]): void {
    this.write('warn', args);
  }
  info(...args: unknown[]): void {
    this.write('info', args);
  }
  debug(...args: unknown[]): void {
    this.write('debug', args);
  }
  trace(...args: unknown[]): void {
    this.write('trace', args);
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.materialise().child(bindings, options);
  }

  isLevelEnabled(level: LevelWithSilentOrString): boolean {
    return (this.real ?? this.parent).isLevelEnabled(level);
  }
}

/** fastify's `childLoggerFactory`, lazy; a route with its own log level gets a real child at once. */
export function lazyChildLoggerFactory(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  opts: ChildLoggerOptions,
): FastifyBaseLogger {
  if (opts.level !== undefined) return logger.child(bindings, opts);
  // It has every method of a pino logger that fastify and our code call on `request.log`.
  // fastify's logger here is the pino logger createServer gave it (loggerInstance).
  return new LazyChildLogger(logger as Logger, bindings, opts) as unknown as FastifyBaseLogger;
}
