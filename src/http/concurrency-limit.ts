import { KeywardenError } from '../policy/errors';

/**
 * Runs at most `max` tasks at once, queues up to `maxQueue` more, and refuses the rest with
 * RATE_LIMITED. Guards deliberately expensive work (scrypt on unknown secrets) so a flood of
 * wrong secrets cannot occupy libuv's thread pool, which PKCS#11 signing also runs on.
 */
export class ConcurrencyLimit {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly max: number,
    private readonly maxQueue: number,
    private readonly what: string,
  ) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.max) {
      this.active++;
    } else {
      if (this.waiting.length >= this.maxQueue) {
        throw new KeywardenError('RATE_LIMITED', `too many ${this.what} in progress; retry shortly`);
      }
      // The finishing task hands its slot over, so `active` stays as it is.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
