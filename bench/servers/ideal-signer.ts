/**
 * The "ideal HSM signer" yardstick: a bare fastify route that builds a JWT and signs it with
 * C_SignAsync on the same PKCS#11 token and key keywarden uses, over a session pool of the same
 * size. Nothing else: no authentication, no claim rules, no key-state checks, no metrics. It is
 * the ceiling of what any HTTP signer on this token, in Node, can do.
 */
import { createHash, randomUUID } from 'node:crypto';
import fastify from 'fastify';
import * as pkcs11js from 'pkcs11js';
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

function openSigner(c: Config) {
  Object.assign(process.env, c.moduleEnv);
  const pk = new pkcs11js.PKCS11();
  pk.load(c.module);
  pk.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  const slot = pk.C_GetSlotList(true).find((s) => pk.C_GetTokenInfo(s).label.trim() === c.tokenLabel);
  if (!slot) throw new Error(`no token ${c.tokenLabel}`);
  const sessions: Buffer[] = [];
  for (let i = 0; i < c.sessions; i++) {
    sessions.push(pk.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
  }
  pk.C_Login(sessions[0]!, pkcs11js.CKU_USER, c.pin);
  pk.C_FindObjectsInit(sessions[0]!, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_ID, value: Buffer.from(c.ckaId, 'hex') },
  ]);
  const key = pk.C_FindObjects(sessions[0]!, 1)[0];
  pk.C_FindObjectsFinal(sessions[0]!);
  if (!key) throw new Error(`no private key with CKA_ID ${c.ckaId}`);

  const idle = [...sessions];
  const waiting: ((s: Buffer) => void)[] = [];
  const acquire = () =>
    idle.length > 0 ? Promise.resolve(idle.pop()!) : new Promise<Buffer>((r) => waiting.push(r));
  const release = (s: Buffer) => {
    const next = waiting.shift();
    if (next) next(s);
    else idle.push(s);
  };
  const mechanism = {
    mechanism:
      c.alg === 'ES256' ? pkcs11js.CKM_ECDSA : c.alg === 'RS256' ? pkcs11js.CKM_SHA256_RSA_PKCS : CKM_EDDSA,
  };
  return async (input: Buffer): Promise<Buffer> => {
    const data = c.alg === 'ES256' ? createHash('sha256').update(input).digest() : input;
    const s = await acquire();
    try {
      pk.C_SignInit(s, mechanism, key);
      return await pk.C_SignAsync(s, data, Buffer.alloc(512));
    } finally {
      release(s);
    }
  };
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
