import { strict as assert } from 'node:assert';
import { publicBaseUrl } from '../../../src/http/public-url';

describe('publicBaseUrl (what discovery advertises as jwks_uri)', () => {
  it('uses server.publicUrl when set, without a trailing slash', () => {
    assert.deepEqual(publicBaseUrl('https://keys.example.com/', { host: '0.0.0.0', port: 8080 }), {
      url: 'https://keys.example.com',
      warning: null,
    });
  });

  it('uses a concrete listen address as it is (IPv6 in brackets)', () => {
    assert.deepEqual(publicBaseUrl(undefined, { host: '10.1.2.3', port: 9000 }), {
      url: 'http://10.1.2.3:9000',
      warning: null,
    });
    assert.equal(publicBaseUrl(undefined, { host: '::1', port: 9000 }).url, 'http://[::1]:9000');
  });

  it('never advertises a wildcard address: loopback stands in, with a warning naming server.publicUrl', () => {
    for (const [host, url] of [
      ['0.0.0.0', 'http://127.0.0.1:8080'],
      ['::', 'http://[::1]:8080'],
    ] as const) {
      const r = publicBaseUrl(undefined, { host, port: 8080 });
      assert.equal(r.url, url);
      assert.match(r.warning ?? '', /server\.publicUrl/);
    }
  });

  it('with TLS on, the derived URL is https (a configured one is used as given)', () => {
    assert.equal(
      publicBaseUrl(undefined, { host: '127.0.0.1', port: 8443 }, true).url,
      'https://127.0.0.1:8443',
    );
    assert.equal(
      publicBaseUrl(undefined, { host: '0.0.0.0', port: 8443 }, true).url,
      'https://127.0.0.1:8443',
    );
    assert.equal(
      publicBaseUrl('https://keys.example.com', { host: '0.0.0.0', port: 8443 }, true).url,
      'https://keys.example.com',
    );
  });
});
