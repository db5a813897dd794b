/** The parts of an HTTP response the key cache uses. */
export type FetchOutcome =
  | {
      ok: true;
      status: 200;
      body: string;
      etag: string | null;
      cacheControl: string | null;
      age: string | null;
    }
  | { ok: true; status: 304; etag: string | null; cacheControl: string | null; age: string | null }
  | { ok: false; problem: string };

export interface FetchDocumentOptions {
  fetch: typeof fetch;
  /** Sent as If-None-Match; a 304 then means the cached document is still current. */
  etag?: string | null;
  allowInsecureHttp: boolean;
  timeoutMs: number;
  maxBytes: number;
}

/**
 * GETs a discovery document or JWKS. Never rejects: every failure is `{ ok: false }` with a
 * message fit for a reason. Plain http is refused except to loopback (or when explicitly
 * allowed), since whoever can alter the JWKS can mint tokens; bodies are size-capped.
 */
export async function fetchDocument(url: string, options: FetchDocumentOptions): Promise<FetchOutcome> {
  const insecure = insecureUrlProblem(url, options.allowInsecureHttp);
  if (insecure) return { ok: false, problem: insecure };
  try {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.etag) headers['if-none-match'] = options.etag;
    const res = await options.fetch(url, { headers, signal: AbortSignal.timeout(options.timeoutMs) });
    // A redirect must not downgrade the transport either.
    const redirected = res.url ? insecureUrlProblem(res.url, options.allowInsecureHttp) : undefined;
    if (redirected) {
      await res.body?.cancel();
      return { ok: false, problem: `redirected: ${redirected}` };
    }
    const meta = {
      etag: res.headers.get('etag'),
      cacheControl: res.headers.get('cache-control'),
      age: res.headers.get('age'),
    };
    if (res.status === 304 && options.etag) {
      await res.body?.cancel();
      return { ok: true, status: 304, ...meta };
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      return { ok: false, problem: `GET ${url} answered HTTP ${res.status}` };
    }
    const body = await readCapped(res, options.maxBytes);
    if (body === undefined)
      return { ok: false, problem: `GET ${url}: body larger than ${options.maxBytes} bytes` };
    return { ok: true, status: 200, body, ...meta };
  } catch (e) {
    return { ok: false, problem: `GET ${url} failed: ${describe(e)}` };
  }
}

/** Why `url` may not be fetched, or undefined when it may. */
export function insecureUrlProblem(url: string, allowInsecureHttp: boolean): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `${JSON.stringify(url)} is not a URL`;
  }
  if (parsed.protocol === 'https:') return undefined;
  if (parsed.protocol !== 'http:') return `${url} is not an http(s) URL`;
  if (allowInsecureHttp || isLoopback(parsed.hostname)) return undefined;
  return `${url} uses plain http (allowed only to loopback, or with allowInsecureHttp)`;
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

async function readCapped(res: Response, maxBytes: number): Promise<string | undefined> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = e.cause instanceof Error ? `: ${e.cause.message}` : '';
    return `${e.message}${cause}`;
  }
  return String(e);
}
