import { strict as assert } from 'node:assert';
import { SseReader, type SseEvent } from '../../../packages/verify/src/sse-reader';
import { formatKeyEvent, parseKeyEvent } from '../../../packages/verify/src/key-events';

function read(chunks: string[], maxBytes = 1024): { events: SseEvent[]; retries: number[]; ok: boolean } {
  const events: SseEvent[] = [];
  const retries: number[] = [];
  const reader = new SseReader({
    onEvent: (e) => events.push(e),
    onRetry: (ms) => retries.push(ms),
    maxBytes,
  });
  let ok = true;
  for (const c of chunks) ok = reader.push(c) && ok;
  return { events, retries, ok };
}

describe('SSE reader (the key-events stream as the library parses it)', () => {
  it('dispatches on a blank line, with event name, multi-line data and a persisting id', () => {
    const { events } = read(['id: 1\nevent: keys\ndata: a\ndata: b\n\n', 'data: c\n\n']);
    assert.deepEqual(events, [
      { event: 'keys', data: 'a\nb', lastEventId: '1' },
      { event: 'message', data: 'c', lastEventId: '1' },
    ]);
  });

  it('takes any line break (CRLF split across chunks, CR, LF) and any chunking', () => {
    const text = 'event: keys\r\ndata: x\r\n\r\nevent: keys\rdata: y\r\rdata: z\n\n';
    const whole = read([text]).events;
    const bytewise = read([...text]).events;
    const split = read([
      'event: keys\r',
      '\ndata: x\r',
      '\n\r',
      '\nevent: keys\rdata: y\r\rdata: z\n\n',
    ]).events;
    assert.deepEqual(
      whole.map((e) => e.data),
      ['x', 'y', 'z'],
    );
    assert.deepEqual(bytewise, whole);
    assert.deepEqual(split, whole);
  });

  it('ignores comments (heartbeats), unknown fields, events without data and ids with NUL', () => {
    const { events, retries } = read([
      ': heartbeat\n\n',
      'foo: bar\n\n',
      'event: keys\n\n',
      'id: a\0b\ndata: d\n\n',
      'retry: 250\nretry: x\n\n',
    ]);
    assert.deepEqual(events, [{ event: 'message', data: 'd', lastEventId: '' }]);
    assert.deepEqual(retries, [250]);
  });

  it('refuses a line or event past maxBytes (the caller then drops the stream)', () => {
    assert.equal(read(['data: ' + 'x'.repeat(2000)], 1024).ok, false);
    assert.equal(
      read(['data: ' + 'x'.repeat(600) + '\n', 'data: ' + 'x'.repeat(600) + '\n'], 1024).ok,
      false,
    );
    assert.equal(
      read(['data: ' + 'x'.repeat(600) + '\n\n', 'data: ' + 'x'.repeat(600) + '\n\n'], 1024).ok,
      true,
    );
  });

  it('round-trips a key event; malformed ones read as nothing', () => {
    const event = { scope: 'orders', etag: '"abc"', kids: ['k1', 'k2'] };
    const { events } = read([formatKeyEvent(event)]);
    assert.equal(events[0]!.lastEventId, '"abc"');
    assert.deepEqual(parseKeyEvent(events[0]!.data), event);
    for (const bad of [
      '',
      'null',
      '[]',
      '{"scope":"s","etag":"","kids":[]}',
      '{"scope":"s","etag":"e","kids":[1]}',
      '{"scope":"s","etag":"e","kids":[""]}',
      '{"scope":"s","etag":"e","kids":[],"kids":["x"]}',
    ]) {
      assert.equal(parseKeyEvent(bad), undefined, bad);
    }
    assert.throws(() => formatKeyEvent({ scope: 's', etag: '"a"\nevent: x', kids: [] }), TypeError);
  });
});
