/**
 * Polls `probe` until it returns a value (not undefined) and returns it: what e2e tests use to
 * wait for a running daemon to notice something. A probe that throws counts as "not yet". On
 * timeout the error names what was awaited, followed by `context()` (e.g. the daemon's output).
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  opts: { ms?: number; everyMs?: number; context?: () => string } = {},
): Promise<T> {
  const { ms = 20_000, everyMs = 200, context } = opts;
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${context ? `\n${context()}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
