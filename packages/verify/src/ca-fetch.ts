import { request } from 'node:https';
import { Readable } from 'node:stream';

/** PEM CA certificate(s), as node:tls takes them. */
export type TrustedCa = string | Buffer | readonly (string | Buffer)[];

/**
 * A `fetch` for the discovery document and JWKS that trusts `ca` (a private CA) instead of Node's
 * default roots: Node's global fetch takes no CA, and setting NODE_EXTRA_CA_CERTS would make the
 * whole process trust it. GET over node:https with the TLS checks node:tls makes (chain to `ca`,
 * host name in the certificate, validity); redirects are not followed (a 3xx is a failed fetch).
 * Plain http URLs (loopback only, see fetchDocument) go to the global fetch unchanged.
 */
export function fetchTrustingCa(ca: TrustedCa): typeof fetch {
  const caList = typeof ca === 'string' || Buffer.isBuffer(ca) ? [ca] : [...ca];
  const trustingFetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.protocol !== 'https:') return globalThis.fetch(input, init);
    return new Promise<Response>((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'GET',
          headers: Object.fromEntries(new Headers(init?.headers).entries()),
          ca: caList,
          ...(init?.signal ? { signal: init.signal } : {}),
        },
        (res) => {
          const headers = new Headers();
          const raw = res.rawHeaders;
          for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
          const status = res.statusCode ?? 502;
          const bodyless = status === 204 || status === 304 || status < 200;
          if (bodyless) res.resume();
          const body = bodyless ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
          resolve(new Response(body, { status: status < 200 ? 502 : status, headers }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  };
  return trustingFetch as typeof fetch;
}
