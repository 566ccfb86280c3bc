import assert from 'node:assert/strict';
import { BusyError, GenerationGate } from '../src/imaged/generation-gate.ts';
import { etagOf, notModified } from '../src/imaged/http-answer.ts';
import { candidateUrls, originImageUrl } from '../src/imaged/origin-urls.ts';
import { parseRequestPath } from '../src/imaged/request-path.ts';
import { parseS3Url } from '../src/net/s3-url.ts';
import { insideRoots } from '../src/download/fetch-file-original.ts';

const PRESETS = {
  small: { width: 120, height: 90, mode: 'crop' as const },
  medium: { width: 320, height: 240, mode: 'pad' as const },
};
const HASH = '0123456789abcdef0123456789abcdef';

describe('lis_imaged: pure parts', () => {
  it('parses frontend paths, origin paths in three forms, and refuses the rest', () => {
    const origins = new Set(['photos']);
    const parse = (p: string) => parseRequestPath(p, PRESETS, origins);
    assert.deepEqual(parse(`/uk/01/23/${HASH}_small.jpg`), { kind: 'thumbnail', country: 'uk', hash: HASH, preset: 'small', ext: 'jpg', version: 1 });
    assert.deepEqual(parse(`/uk/01/23/${HASH}_medium.webp?x=1`), { kind: 'thumbnail', country: 'uk', hash: HASH, preset: 'medium', ext: 'webp', version: 1 });
    assert.deepEqual(parse(`/uk/01/23/${HASH}_medium.v12.jpg`), { kind: 'thumbnail', country: 'uk', hash: HASH, preset: 'medium', ext: 'jpg', version: 12 });
    assert.deepEqual(parse('/photos/small/a/b.jpg'), { kind: 'origin', origin: 'photos', preset: 'small', key: 'a/b.jpg' });
    assert.deepEqual(parse('/photos/120x90/a/b.jpg'), { kind: 'origin', origin: 'photos', preset: 'small', key: 'a/b.jpg' });
    assert.deepEqual(parse('/photos/320/240/resizecomp/a.jpg'), { kind: 'origin', origin: 'photos', preset: 'medium', key: 'a.jpg' });
    const refused = (p: string) => {
      const r = parse(p);
      return r.kind === 'refused' ? r.status : r.kind;
    };
    assert.equal(refused('/photos/320/240/crop/a.jpg'), 400, 'a size that exists but in another mode');
    assert.equal(refused('/photos/100x100/a.jpg'), 400);
    // A size that names no preset is 400 whatever its length (6 digits were 404 "no preset").
    assert.equal(refused('/photos/123456/90/crop/a.jpg'), 400);
    assert.equal(refused('/photos/999999x9/a.jpg'), 400);
    assert.equal(refused('/photos/12345678901234567890x90/a.jpg'), 400);
    // One URL per thumbnail: leading zeros name no preset.
    assert.equal(refused('/photos/0120/090/crop/a.jpg'), 400);
    assert.equal(refused('/photos/120/090/crop/a.jpg'), 400);
    assert.equal(refused('/photos/0120x90/a.jpg'), 400);
    assert.equal(refused('/photos/120x090/a.jpg'), 400);
    assert.equal(refused('/photos/small/.hidden'), 400);
    assert.equal(refused('/photos/small/a%2f..%2fb'), 400);
    assert.equal(refused('/photos//small/a.jpg'), 400);
    assert.equal(refused('/photos/small/a\\b.jpg'), 400);
    assert.equal(refused('/photos/small/%e0%a4%a'), 400);
    assert.equal(refused(`/uk/01/23/${HASH}_small.png`), 404);
    assert.equal(refused(`/uk/01/23/${HASH}_small.v1.jpg`), 404, 'version 1 has no suffix');
    assert.equal(refused(`/uk/01/23/${HASH}_small.v02.jpg`), 404);
    assert.equal(refused(`/uk/01/24/${HASH}_small.jpg`), 404);
    assert.equal(refused('/other/small/a.jpg'), 404);
    // Names of Object.prototype's members that fit the preset pattern are no presets.
    assert.equal(refused(`/uk/01/23/${HASH}_constructor.jpg`), 404);
    assert.equal(refused('/photos/constructor/a.jpg'), 404);
    assert.equal(refused('/photos/small'), 400);
  });

  it('names origin rows by their first source and finds the fallbacks of such a URL', () => {
    const origin = {
      country: 'uk',
      datasourceId: 0,
      sources: [
        { type: 's3' as const, bucket: 'b1', prefix: 'p/' },
        { type: 'http' as const, baseUrl: 'http://10.0.0.5/o/' },
        { type: 'folder' as const, dir: '/srv/up' },
      ],
    };
    const url = originImageUrl(origin, 'a b/c.jpg');
    assert.equal(url, 's3://b1/p/a%20b/c.jpg');
    assert.deepEqual(candidateUrls(url, { photos: origin }), [url, 'http://10.0.0.5/o/a%20b/c.jpg', 'file:///srv/up/a%20b/c.jpg']);
    assert.deepEqual(candidateUrls('http://elsewhere/x.jpg', { photos: origin }), ['http://elsewhere/x.jpg']);
    // A folder first: its fallbacks get the key itself, not `/key`, and a neighbouring folder is not its.
    const uploads = { ...origin, sources: [origin.sources[2], origin.sources[0]] };
    const local = originImageUrl(uploads, 'x/1.jpg');
    assert.equal(local, 'file:///srv/up/x/1.jpg');
    assert.deepEqual(candidateUrls(local, { uploads }), [local, 's3://b1/p/x/1.jpg']);
    assert.deepEqual(candidateUrls('file:///srv/upper/x/1.jpg', { uploads }), ['file:///srv/upper/x/1.jpg']);
    assert.deepEqual(parseS3Url(url), { bucket: 'b1', key: 'p/a b/c.jpg' });
    assert.equal(parseS3Url('s3://Bad_Bucket/x'), null);
    assert.equal(insideRoots('/srv/up/a/b.jpg', ['/srv/up']), true);
    assert.equal(insideRoots('/srv/up/../etc/passwd', ['/srv/up']), false);
    assert.equal(insideRoots('/srv/upper/x.jpg', ['/srv/up']), false);
  });

  it('validators: nginx ETag form, If-None-Match before If-Modified-Since', () => {
    const picture = { bytes: Buffer.alloc(0x1234), mtime: new Date('2026-11-29T10:00:00.700Z') };
    const etag = etagOf(picture);
    assert.equal(etag, `"${(Date.parse('2026-11-29T10:00:00Z') / 1000).toString(16)}-1234"`);
    assert.equal(notModified({ 'if-none-match': `"x", W/${etag}` }, etag, picture.mtime), true);
    assert.equal(notModified({ 'if-none-match': '"x"', 'if-modified-since': 'Sun, 29 Nov 2026 10:00:00 GMT' }, etag, picture.mtime), false);
    assert.equal(notModified({ 'if-modified-since': 'Sun, 29 Nov 2026 10:00:00 GMT' }, etag, picture.mtime), true);
    assert.equal(notModified({ 'if-modified-since': 'Sun, 29 Nov 2026 09:59:59 GMT' }, etag, picture.mtime), false);
    // RFC 9110's obsolete forms count; anything that is no HTTP-date is ignored (Date.parse would take these as 2099 and 3000).
    assert.equal(notModified({ 'if-modified-since': 'Sunday, 29-Nov-26 10:00:00 GMT' }, etag, picture.mtime), true);
    assert.equal(notModified({ 'if-modified-since': 'Sun Nov 29 10:00:00 2026' }, etag, picture.mtime), true);
    assert.equal(notModified({ 'if-modified-since': '2099' }, etag, picture.mtime), false);
    assert.equal(notModified({ 'if-modified-since': '1 Jan 3000' }, etag, picture.mtime), false);
    // Dates that are no dates, ignored as nginx ignores them: Date.parse rolled them over into 2099 (and so 304).
    for (const bad of ['Tue, 31 Feb 2099 10:00:00 GMT', 'Tue, 01 Dec 2099 24:00:00 GMT', 'Tue, 01 Dec 2099 23:00:60 GMT', 'Tue Feb 31 10:00:00 2099'])
      assert.equal(notModified({ 'if-modified-since': bad }, etag, picture.mtime), false, bad);
    assert.equal(notModified({ 'if-modified-since': 'Tue Dec  1 10:00:00 2099' }, etag, picture.mtime), true, 'a one-digit asctime day');
    assert.equal(notModified({ 'if-modified-since': 'Thursday, 31-Dec-26 23:59:59 GMT' }, etag, picture.mtime), true);
  });

  it('the gate runs one make per key, bounds runs and waiters, and refuses beyond', async () => {
    const gate = new GenerationGate<string>(1, 1);
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    let makes = 0;
    const make = async () => {
      makes++;
      await blocked;
      return 'bytes';
    };
    const first = gate.run('a', make);
    const joined = gate.run('a', make);
    await assert.rejects(gate.run('a', make), BusyError, 'the one waiting place is taken');
    await assert.rejects(gate.run('b', make), BusyError, 'no run slot and no waiting place');
    release();
    assert.deepEqual(await Promise.all([first, joined]), ['bytes', 'bytes']);
    assert.equal(makes, 1);
    assert.deepEqual(gate.stats, { running: 0, waiting: 0, keys: 0 });
    assert.equal(await gate.run('b', make), 'bytes');
  });
});
