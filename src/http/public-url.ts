/** Listen addresses that mean "every interface": not an address anyone can connect to. */
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]', '']);

/**
 * The base URL discovery documents advertise (`jwks_uri`): `server.publicUrl` when configured,
 * else the listen address. A wildcard listen address (`0.0.0.0` in a container) would advertise
 * a URL nobody can fetch, so loopback stands in and `warning` says to set `server.publicUrl`.
 * With `tls` (server.tls set) the derived URL is https; a configured one is https already
 * (validateConfig refuses an http publicUrl with TLS on).
 */
export function publicBaseUrl(
  publicUrl: string | undefined,
  listen: { host: string; port: number },
  tls = false,
): { url: string; warning: string | null } {
  if (publicUrl) return { url: publicUrl.replace(/\/+$/, ''), warning: null };
  const scheme = tls ? 'https' : 'http';
  if (!WILDCARD_HOSTS.has(listen.host)) {
    const host = listen.host.includes(':') && !listen.host.startsWith('[') ? `[${listen.host}]` : listen.host;
    return { url: `${scheme}://${host}:${listen.port}`, warning: null };
  }
  const loopback = listen.host.includes(':') ? '[::1]' : '127.0.0.1';
  const url = `${scheme}://${loopback}:${listen.port}`;
  return {
    url,
    warning: `server.publicUrl is not set and the daemon listens on ${listen.host || 'every interface'}: discovery documents advertise ${url}; set server.publicUrl to the URL relying parties use`,
  };
}
