import * as assert from 'node:assert/strict';
import { TokenServiceMetrics } from '../../../src/http/metrics';

/** One sample's value from the Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('token service metrics: sign counts and durations', () => {
  it('a scrape sees every sign answered before it, batched or not, exactly', async () => {
    const m = new TokenServiceMetrics({ scopes: [{ name: 'consumer' }, { name: 'enterprise' }] } as never);
    // 300 crosses one batch of 256; the rest waits for the scrape.
    for (let i = 0; i < 300; i++) m.signed('consumer', 'ok', i < 100 ? 0.0004 : 0.003);
    m.signed('consumer', 'forbidden', 0.0002);
    m.signed('enterprise', 'ok', 0.02);
    m.signed('nope', 'ok', 0.002);
    const text = await m.registry.metrics();
    const s = (series: string) => sample(text, series);
    assert.equal(s('keywarden_sign_requests_total{scope="consumer",result="ok"}'), 300);
    assert.equal(s('keywarden_sign_requests_total{scope="consumer",result="forbidden"}'), 1);
    assert.equal(s('keywarden_sign_requests_total{scope="enterprise",result="ok"}'), 1);
    assert.equal(s('keywarden_sign_requests_total{scope="_unknown",result="ok"}'), 1);
    assert.equal(s('keywarden_sign_duration_seconds_count{scope="consumer"}'), 301);
    assert.equal(s('keywarden_sign_duration_seconds_bucket{le="0.0005",scope="consumer"}'), 101);
    assert.equal(s('keywarden_sign_duration_seconds_bucket{le="0.005",scope="consumer"}'), 301);
    assert.ok(
      Math.abs(s('keywarden_sign_duration_seconds_sum{scope="consumer"}')! - (0.04 + 0.6 + 0.0002)) < 1e-9,
    );
    assert.equal(s('keywarden_sign_duration_seconds_count{scope="enterprise"}'), 1);
    // A second scrape with nothing new says the same; new signs add to it.
    m.signed('consumer', 'ok', 0.003);
    const again = await m.registry.metrics();
    assert.equal(sample(again, 'keywarden_sign_requests_total{scope="consumer",result="ok"}'), 301);
    assert.equal(sample(again, 'keywarden_sign_duration_seconds_count{scope="consumer"}'), 302);
  });

  it('the JSON form (what the cluster primary sums) sees pending signs too', async () => {
    const m = new TokenServiceMetrics({ scopes: [{ name: 'consumer' }] } as never);
    m.signed('consumer', 'ok', 0.001);
    const json = await m.registry.getMetricsAsJSON();
    const counter = json.find((x) => x.name === 'keywarden_sign_requests_total')!;
    assert.deepEqual(
      counter.values.map((v) => [v.labels, v.value]),
      [[{ scope: 'consumer', result: 'ok' }, 1]],
    );
  });
});
