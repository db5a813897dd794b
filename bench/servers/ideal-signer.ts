/**
 * The "ideal HSM signer" yardstick: a bare fastify route that builds a JWT and signs it with
 * C_SignAsync on the same PKCS#11 token and key keywarden uses, over a session pool of the same
 * size. Nothing else: no authentication, no claim rules, no key-state checks, no metrics. It is
 * the ceiling of what any HTTP signer on this token, in Node, can do.
 */
import { createHash, randomUUID } from 'node:crypto';
import fastify from 'fastify';
import * as pkcs11js from 'pkcs11js';
import { openTokenSigner } from '../lib/token-signer';
import { serveCluster, serverConfig } from './serve-cluster';

interface Config {
  module: string;
  moduleEnv: Record<string, string>;
  tokenLabel: string;
  pin: string;
  sessions: number;
  alg: 'ES256' | 'RS256' | 'EdDSA';
  kid: string;
  ckaId: string;
  issuer: string;
  ttlSeconds: number;
}

const CKM_EDDSA = 0x1057;
const b64 = (s: string) => Buffer.from(s).toString('base64url');

function openSigner(c: Config): (input: Buffer) => Promise<Buffer> {
  const mechanism = {
    mechanism:
      c.alg === 'ES256' ? pkcs11js.CKM_ECDSA : c.alg === 'RS256' ? pkcs11js.CKM_SHA256_RSA_PKCS : CKM_EDDSA,
  };
  const signRaw = openTokenSigner(c, mechanism);
  return (input) => signRaw(c.alg === 'ES256' ? createHash('sha256').update(input).digest() : input);
}

const config = serverConfig<Config>();
void serveCluster(config.workers, async () => {
  const sign = openSigner(config);
  const header = b64(JSON.stringify({ alg: config.alg, kid: config.kid, typ: 'JWT' }));
  const app = fastify({ logger: false });
  app.post<{ Body: { claims: Record<string, unknown> } }>('/sign', async (req) => {
    const iat = Math.floor(Date.now() / 1000);
    const exp = iat + config.ttlSeconds;
    const payload = { ...req.body.claims, iss: config.issuer, iat, nbf: iat, exp, jti: randomUUID() };
    const input = `${header}.${b64(JSON.stringify(payload))}`;
    const sig = await sign(Buffer.from(input, 'ascii'));
    return {
      token: `${input}.${sig.toString('base64url')}`,
      kid: config.kid,
      expiresAt: new Date(exp * 1000).toISOString(),
    };
  });
  await app.listen({ host: '127.0.0.1', port: config.port });
});
