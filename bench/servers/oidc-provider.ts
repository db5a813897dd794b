/**
 * The peer yardstick: node-oidc-provider (panva) issuing OAuth 2.0 client_credentials access
 * tokens as JWTs (RFC 9068 profile), signed with a software key of the requested algorithm,
 * client authentication client_secret_basic. Also serves its JWKS at /jwks.
 */
import { createServer } from 'node:http';
import { serveCluster, serverConfig } from './serve-cluster';

interface Config {
  alg: 'ES256' | 'RS256' | 'EdDSA';
  /** Private JWK (generated once by the runner, so every worker signs with the same key). */
  jwk: Record<string, unknown>;
  clientId: string;
  clientSecret: string;
  audience: string;
}

const config = serverConfig<Config>();
void serveCluster(config.workers, async () => {
  const { default: Provider } = await import('oidc-provider');
  const issuer = `http://127.0.0.1:${config.port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: config.clientId,
        client_secret: config.clientSecret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: config.alg,
      },
    ],
    jwks: { keys: [{ ...config.jwk, alg: config.alg, use: 'sig' }] },
    scopes: ['api:read'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api:read',
          audience: config.audience,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: config.alg } },
        }),
      },
    },
  });
  await new Promise<void>((res) => createServer(provider.callback()).listen(config.port, '127.0.0.1', res));
});
