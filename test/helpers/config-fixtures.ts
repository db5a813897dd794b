/**
 * The smallest valid config parts, for tests that validate config documents in memory (no module
 * is loaded: the paths only have to look right).
 */

/** A policy every validation accepts: short enough to reason about, within every bound. */
export const TEST_POLICY = {
  jwksMaxAge: '5m',
  prepublish: '10m',
  activeFor: '1d',
  verifyGrace: '1h',
  maxTokenTtl: '15m',
  destroyAfter: '1d',
  maxKeyLifetime: '2d',
};

/** One PKCS#11 backend named `hsm`. */
export const TEST_BACKENDS = {
  hsm: { type: 'pkcs11', module: '/usr/lib/softhsm.so', tokenLabel: 't', pin: { env: 'PIN' } },
};

/** A scope on `hsm` named `name`, issuer https://issuer.test/<name>, with `over` on top. */
export const testScope = (name = 'demo', over: Record<string, unknown> = {}) => ({
  name,
  issuer: `https://issuer.test/${name}`,
  audiences: ['api'],
  alg: 'ES256',
  backend: 'hsm',
  policy: TEST_POLICY,
  ...over,
});
