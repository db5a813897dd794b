import { ClientAuthenticator } from '../../src/http/auth';
import type { Keywarden } from '../../src/lifecycle';

/**
 * Runs `fn` with a started ClientAuthenticator whose timer never fires during a test (1 h), so
 * the clients table is polled exactly when the test calls `auth.poll()`; stopped afterwards.
 */
export async function withAuthenticator<T>(
  kw: Keywarden,
  fn: (auth: ClientAuthenticator) => Promise<T>,
): Promise<T> {
  const auth = new ClientAuthenticator(kw, { pollSeconds: 3600 });
  await auth.start();
  try {
    return await fn(auth);
  } finally {
    auth.stop();
  }
}
