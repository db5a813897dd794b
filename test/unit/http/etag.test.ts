import * as assert from 'node:assert/strict';
import { ifNoneMatchHits } from '../../../src/lifecycle/etag';

const ETAG = '"abcDEF123_-xyz"';

describe('If-None-Match against the JWKS ETag (RFC 9110 weak comparison)', () => {
  it('matches the tag itself, weak either side, in a list, and *', () => {
    for (const v of [
      ETAG,
      `W/${ETAG}`,
      `"other", ${ETAG}`,
      `"other",${ETAG} , "third"`,
      `W/"other", W/${ETAG}`,
      '*',
      ` * `,
    ])
      assert.equal(ifNoneMatchHits(v, ETAG), true, v);
    assert.equal(ifNoneMatchHits(ETAG, `W/${ETAG}`), true, 'a weak own tag compares weakly too');
  });

  it('does not match no header, an empty one, another tag, a prefix or an unquoted tag', () => {
    for (const v of [
      undefined,
      '',
      ' ',
      ',',
      '"other"',
      ETAG.slice(0, -2) + '"',
      ETAG.slice(1, -1),
      `w/${ETAG}`,
      `W/W/${ETAG}`,
      `"${ETAG}"`,
      `${ETAG}x`,
      '"abc,DEF123_-xyz"',
      `"other", ${ETAG.slice(0, 5)}`,
    ])
      assert.equal(ifNoneMatchHits(v, ETAG), false, String(v));
  });

  it('a long list of other tags is just a miss', () => {
    const many = Array.from({ length: 2000 }, (_, i) => `"tag-${i}"`).join(', ');
    assert.equal(ifNoneMatchHits(many, ETAG), false);
    assert.equal(ifNoneMatchHits(`${many}, ${ETAG}`, ETAG), true);
  });
});
