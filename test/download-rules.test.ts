import assert from 'node:assert/strict';
import { addressPolicy } from '../src/net/address-policy.ts';
import { classifyDownloadError, classifyTransferError, parseRetryAfter, statusFailure } from '../src/download/classify-download-error.ts';
import { shortOrUnreadable } from '../src/download/decoder-verdict.ts';
import { DownloadError } from '../src/download/download-error.ts';
import { hostWaitOf, rowResult } from '../src/download/download-worker.ts';
import { HostLimiter } from '../src/download/host-limiter.ts';
import { HostPauses } from '../src/download/host-pauses.ts';
import { completenessCheck } from '../src/download/image-completeness.ts';
import { describeStart, sniffImageFormat } from '../src/download/magic-sniff.ts';
import { safeLookup } from '../src/download/safe-lookup.ts';
import { makeTestImages, type TestImages } from './helpers/image-server.ts';

describe('download rules (pure)', () => {
  it('the decoder check gives no verdict, instead of corrupt_image, when the decoder ran short of our threads, memory or files', async () => {
    // As libvips says them (the first seen in a real run with too few threads allowed).
    for (const message of [
      'glib: Error creating thread: Resource temporarily unavailable',
      'vips_tracked: out of memory --- size == 187MB',
      'VipsForeignLoad: Too many open files',
    ]) {
      const verdict = await shortOrUnreadable('/nonexistent', new Error(message));
      assert.equal(verdict.kind, 'undecided', message);
    }
    const corrupt = await shortOrUnreadable('/nonexistent', new Error('VipsJpeg: Premature end of input file'));
    assert.equal(corrupt.kind, 'unreadable');
  });

  let images: TestImages;
  before(async () => (images = await makeTestImages()));

  describe('safe DNS lookup', () => {
    const fakeDns = (answers: Array<{ address: string; family: number }>) =>
      ((_h: string, _o: unknown, cb: (e: null, a: typeof answers) => void) => cb(null, answers)) as never;
    const lookup = (answers: Array<{ address: string; family: number }>, all: boolean) =>
      new Promise<unknown>((resolve) =>
        safeLookup(addressPolicy([]), fakeDns(answers))('feed.example', { all }, (error: Error | null, address: unknown, family?: number) =>
          resolve(error ? { error } : { address, family }),
        ),
      );
    it('drops refused addresses from the answer and keeps the rest', async () => {
      assert.deepEqual(
        await lookup(
          [
            { address: '10.0.0.1', family: 4 },
            { address: '93.184.216.34', family: 4 },
          ],
          false,
        ),
        { address: '93.184.216.34', family: 4 },
      );
      assert.deepEqual(
        await lookup(
          [
            { address: '::1', family: 6 },
            { address: '93.184.216.34', family: 4 },
          ],
          true,
        ),
        { address: [{ address: '93.184.216.34', family: 4 }], family: undefined },
      );
    });
    it('fails with refused_address when every address is refused', async () => {
      const { error } = (await lookup([{ address: '169.254.169.254', family: 4 }], true)) as { error: Error };
      const failure = classifyDownloadError(error);
      assert.equal(failure.errorClass, 'refused_address');
      assert.equal(failure.reason, 'refused address: feed.example resolves to 169.254.169.254 (link-local)');
      assert.equal(failure.retryable, false);
    });
  });

  describe('magic numbers', () => {
    it('knows JPEG, PNG, WebP, GIF, AVIF and TIFF by their bytes', () => {
      assert.equal(sniffImageFormat(images.jpeg), 'jpeg');
      assert.equal(sniffImageFormat(images.png), 'png');
      assert.equal(sniffImageFormat(images.webp), 'webp');
      assert.equal(sniffImageFormat(images.gif), 'gif');
      assert.equal(sniffImageFormat(images.avif), 'avif');
      assert.equal(sniffImageFormat(Buffer.from('II*\0abcdefgh')), 'tiff');
      assert.equal(sniffImageFormat(Buffer.from('MM\0*abcdefgh')), 'tiff');
      assert.equal(sniffImageFormat(Buffer.from('\0\0\0\x18ftypheic\0\0\0\0')), 'heif');
    });
    it('refuses HTML, SVG, PDF, BMP, empty and short bodies', () => {
      for (const text of ['<!DOCTYPE html><html>', '<svg xmlns="http://www.w3.org/2000/svg">', '%PDF-1.7', 'BM6\0\0\0\0\0', '', '\xff\xd8']) {
        assert.equal(sniffImageFormat(Buffer.from(text, 'latin1')), null, text);
      }
      assert.equal(describeStart(Buffer.from('<!DOCTYPE html>\n<html>')), 'starts with "<!DOCTYPE html>\\x0a"');
      assert.equal(describeStart(Buffer.alloc(0)), 'empty body');
    });
  });

  describe('completeness', () => {
    const verdict = (format: Parameters<typeof completenessCheck>[0], bytes: Buffer, chunk = 7) => {
      const check = completenessCheck(format);
      for (let i = 0; i < bytes.length; i += chunk) check.push(bytes.subarray(i, i + chunk));
      return check.verdict();
    };
    it('passes whole images, fed in any chunk size, with data after the end allowed for JPEG', () => {
      for (const chunk of [1, 7, 4096]) {
        assert.equal(verdict('jpeg', images.jpeg, chunk), null);
        assert.equal(verdict('png', images.png, chunk), null);
        assert.equal(verdict('webp', images.webp, chunk), null);
        assert.equal(verdict('gif', images.gif, chunk), null);
      }
      assert.equal(verdict('jpeg', Buffer.concat([images.jpeg, Buffer.from('trailing camera data')])), null);
    });
    it('doubts images cut short at any point (the decoder then decides)', () => {
      for (const [format, bytes] of [
        ['jpeg', images.jpeg],
        ['png', images.png],
        ['webp', images.webp],
        ['gif', images.gif],
      ] as const) {
        for (const keep of [0.3, 0.6, 0.95]) {
          assert.match(
            verdict(format, bytes.subarray(0, Math.floor(bytes.length * keep)))!,
            /ends without|ends before|shorter|has \d+ of/,
            `${format} at ${keep}`,
          );
        }
      }
    });
  });

  describe('error classification', () => {
    it('maps statuses: 404/410 permanent, 429/5xx retried with Retry-After, other 4xx permanent', () => {
      const f = (status: number, after?: string) => {
        const e = statusFailure(status, 'Msg', after);
        return [e.errorClass, e.retryable, e.retryAfterSeconds];
      };
      assert.deepEqual(f(404), ['http_404', false, undefined]);
      assert.deepEqual(f(410), ['http_410', false, undefined]);
      assert.deepEqual(f(429, '120'), ['http_429', true, 120]);
      assert.deepEqual(f(503, '30'), ['http_5xx', true, 30]);
      assert.deepEqual(f(500), ['http_5xx', true, undefined]);
      assert.deepEqual(f(403), ['http_4xx', false, undefined]);
      assert.deepEqual(f(408), ['http_4xx', true, undefined]);
      assert.deepEqual(f(204), ['http_status', false, undefined]);
      assert.equal(statusFailure(404, 'Not Found').message, 'HTTP 404 Not Found');
    });
    it('reads Retry-After as seconds or a date, capped at a day, ignoring nonsense', () => {
      const now = Date.UTC(2026, 0, 1);
      assert.equal(parseRetryAfter('120', now), 120);
      assert.equal(parseRetryAfter(new Date(now + 90_000).toUTCString(), now), 90);
      assert.equal(parseRetryAfter('9999999', now), 86_400);
      assert.equal(parseRetryAfter('soon', now), undefined);
      assert.equal(parseRetryAfter(new Date(now - 5000).toUTCString(), now), undefined);
      assert.equal(parseRetryAfter(undefined, now), undefined);
      // A date is on the server's clock: counted from its Date when it sent one (here 10 minutes behind ours).
      assert.equal(parseRetryAfter(new Date(now - 480_000).toUTCString(), now, new Date(now - 600_000).toUTCString()), 120);
      assert.equal(parseRetryAfter(new Date(now + 90_000).toUTCString(), now, 'not a date'), 90);
    });
    it("reads a Retry-After in asctime form (no zone) as GMT, whatever this host's time zone", () => {
      const zone = process.env.TZ;
      process.env.TZ = 'Asia/Kolkata';
      try {
        const now = Date.UTC(2026, 0, 1, 8, 0, 0);
        assert.equal(parseRetryAfter('Thu Jan  1 08:02:00 2026', now), 120);
        assert.equal(parseRetryAfter('Thu Jan  1 08:02:00 2026', now, 'Thu, 01 Jan 2026 08:00:00 GMT'), 120);
      } finally {
        if (zone === undefined) delete process.env.TZ;
        else process.env.TZ = zone;
      }
    });
    it('finds our own errors inside got wrappers, and sorts socket errors', () => {
      const wrapped = Object.assign(new Error('wrapped'), {
        code: 'ERR_GOT_REQUEST_ERROR',
        cause: new DownloadError('not_image', 'not an image (x)', { retryable: false }),
      });
      assert.deepEqual(classifyDownloadError(wrapped), { reason: 'not an image (x)', errorClass: 'not_image', retryable: false, retryAfterSeconds: undefined });
      const code = (c: string, afterHeaders = false, extra = {}) => classifyDownloadError(Object.assign(new Error(c), { code: c, ...extra }), afterHeaders);
      assert.equal(code('ECONNREFUSED').errorClass, 'connection');
      assert.equal(code('ECONNRESET', true).errorClass, 'truncated');
      assert.equal(code('ETIMEDOUT', false, { event: 'response' }).reason, 'timeout: waiting for the first byte took too long');
      assert.equal(code('ERR_TOO_MANY_REDIRECTS').errorClass, 'redirect_loop');
      assert.equal(code('ENOTFOUND').errorClass, 'dns');
      assert.equal(code('CERT_HAS_EXPIRED').errorClass, 'tls');
      assert.equal(code('Z_DATA_ERROR').errorClass, 'bad_encoding');
      assert.deepEqual(classifyDownloadError(new TypeError('boom')), { reason: 'internal: boom', errorClass: 'internal', retryable: true });
    });
    it('calls a transfer truncated only when it was cut, and an over-long body what it is', () => {
      const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
      const parse = Object.assign(new Error('Parse Error: Expected HTTP/'), { code: 'HPE_INVALID_CONSTANT' });
      assert.match(
        classifyTransferError(reset, { declared: 1000, chunked: false, received: 400 }).reason,
        /^truncated: the transfer was cut: 400 of the 1000 bytes/,
      );
      assert.equal(classifyTransferError(reset, { declared: null, chunked: true, received: 400 }).errorClass, 'truncated');
      const over = classifyTransferError(parse, { declared: 1000, chunked: false, received: 0 });
      assert.deepEqual([over.errorClass, over.retryable], ['overlong_body', false]);
      assert.match(over.reason, /^the server sent more bytes than its Content-Length \(1000\)/);
      assert.equal(
        classifyTransferError(Object.assign(new Error('x'), { code: 'ENOTFOUND' }), { declared: 10, chunked: false, received: 0 }).errorClass,
        'dns',
      );
    });
  });

  describe('host limiter', () => {
    it('caps each host, takes hosts in turn, and counts the overall cap', () => {
      const limiter = new HostLimiter({ concurrency: 3, perHost: 2, perHostDelayMs: 0 }, () => 0);
      for (let i = 0; i < 5; i++) limiter.add('slow.example', `s${i}`);
      limiter.add('fast.example', 'f0');
      const taken = [limiter.take(), limiter.take(), limiter.take()].map((t) => (t && 'item' in t ? t.item : t));
      assert.deepEqual(taken, ['s0', 'f0', 's1'], 'the second host is not stuck behind the first');
      assert.equal(limiter.take(), null, 'overall cap');
      limiter.done('fast.example');
      assert.equal(limiter.take(), null, 'slow.example is at its cap of 2');
      limiter.done('slow.example');
      assert.deepEqual(limiter.take(), { item: 's2', host: 'slow.example' });
    });
    it('a slow download gives its overall slot to another host, but still counts toward its own host: a slow host is never asked more at once', () => {
      const limiter = new HostLimiter({ concurrency: 2, perHost: 2, perHostDelayMs: 0 }, () => 0);
      for (let i = 0; i < 4; i++) limiter.add('slow.example', `s${i}`);
      limiter.add('other.example', 'o0');
      assert.deepEqual(limiter.take(), { item: 's0', host: 'slow.example' });
      assert.deepEqual(limiter.take(), { item: 'o0', host: 'other.example' });
      assert.deepEqual(limiter.take(), null, 'overall cap');
      // s0 drips: its overall slot goes to the queue, yet slow.example already has s0 in flight.
      assert.equal(limiter.demote('slow.example'), true);
      assert.deepEqual(limiter.take(), { item: 's1', host: 'slow.example' });
      assert.equal(limiter.demote('slow.example'), true);
      assert.equal(limiter.take(), null, 'slow.example has its 2 in flight (both slow): no third, whatever the free overall slots');
      limiter.done('slow.example', true);
      assert.deepEqual(limiter.take(), { item: 's2', host: 'slow.example' });
    });
    it('spaces the starts of one host by the delay, and says how long to wait', () => {
      let now = 1000;
      const limiter = new HostLimiter({ concurrency: 10, perHost: 10, perHostDelayMs: 500 }, () => now);
      limiter.add('a', 1);
      limiter.add('a', 2);
      limiter.add('b', 3);
      assert.deepEqual(limiter.take(), { item: 1, host: 'a' });
      assert.deepEqual(limiter.take(), { item: 3, host: 'b' });
      assert.deepEqual(limiter.take(), { waitMs: 500 });
      now += 500;
      assert.deepEqual(limiter.take(), { item: 2, host: 'a' });
    });
    it('takes one queued job out, leaving the others and their turns as they were; a job started is not there', () => {
      const limiter = new HostLimiter({ concurrency: 10, perHost: 10, perHostDelayMs: 0 }, () => 0);
      limiter.add('a', 'a0');
      limiter.add('b', 'b0');
      limiter.add('a', 'a1');
      assert.deepEqual(limiter.take(), { item: 'a0', host: 'a' });
      assert.equal(limiter.remove('a', 'a0'), false, 'started');
      assert.equal(limiter.remove('b', 'b0'), true);
      assert.equal(limiter.remove('b', 'b0'), false, 'already out');
      assert.equal(limiter.queued, 1);
      assert.deepEqual(limiter.take(), { item: 'a1', host: 'a' });
      assert.equal(limiter.take(), null, 'nothing left, no host left in turn');
    });
    it('forgets the hosts it is done with once their delay has passed, however fast their downloads were (a service sees millions over weeks)', () => {
      let now = 0;
      const limiter = new HostLimiter({ concurrency: 10, perHost: 2, perHostDelayMs: 500 }, () => now);
      // 10,000 hosts, one 20 ms download each, 5 ms apart: each ends inside its own host's delay.
      for (let i = 0; i < 10_000; i++) {
        limiter.add(`h${i}.example`, i);
        const taken = limiter.take();
        assert.ok(taken && 'item' in taken);
        now += 20;
        limiter.done(taken.host);
        now += 5;
        // One left by remove(), one by takeQueuedOf(), while another job of theirs runs.
        if (i % 100 === 0) {
          limiter.add(`r${i}.example`, 'a');
          limiter.add(`r${i}.example`, 'b');
          const running = limiter.take();
          assert.ok(running && 'item' in running);
          assert.equal(limiter.remove(`r${i}.example`, 'b'), true);
          now += 1;
          limiter.done(running.host);
        }
      }
      assert.ok(limiter.hostsKept <= 60, `${limiter.hostsKept} hosts kept: only those within their delay (500 ms, 25 ms a host) may be`);
      now += 500;
      limiter.add('last.example', 'x');
      assert.ok(limiter.hostsKept <= 2, `${limiter.hostsKept} hosts kept after every delay passed`);
    });
  });

  describe('host pauses', () => {
    it('a host paused for its Retry-After is paused until then, the later of two pauses winning', () => {
      let now = 0;
      const pauses = new HostPauses(() => now);
      pauses.pause('a', 30_000, 'HTTP 429');
      pauses.pause('a', 10_000, 'HTTP 503');
      assert.deepEqual(pauses.of('a'), { until: 30_000, status: 'HTTP 429' });
      assert.equal(pauses.of('b'), null);
      now = 30_000;
      assert.equal(pauses.of('a'), null, 'over');
    });
    it('forgets the pauses that ran out of hosts never asked again (a hostile source throttling from host name after host name)', () => {
      let now = 0;
      const pauses = new HostPauses(() => now);
      // 10,000 hosts, each answering one 429 with Retry-After 30 s, one a second, none asked again.
      for (let i = 0; i < 10_000; i++) {
        pauses.pause(`h${i}.example`, now + 30_000, 'HTTP 429 Too Many Requests');
        now += 1000;
      }
      assert.ok(pauses.size <= 91, `${pauses.size} pauses kept: only those of the last minute and a half may be`);
    });
  });

  describe('row results', () => {
    const row = { id: '7', attempts: 2 };
    it('new bytes go on to thumbnailing with everything recorded', () => {
      const result = rowResult(row, { kind: 'stored', bytes: 10, contentHash: 'ab', format: 'png', etag: '"e"', lastModified: null }, 'web1');
      assert.deepEqual(result, {
        ok: true,
        row: {
          id: '7',
          set: {
            store_host: 'web1',
            downloaded_at: 'now', // the database's clock, not this host's
            etag: '"e"',
            last_modified: null,
            content_hash: 'ab',
            original_bytes: 10,
            original_format: 'png',
          },
        },
      });
    });
    it('a 304 or the same bytes go straight back to live', () => {
      const same = rowResult(row, { kind: 'identical', bytes: 10, contentHash: 'ab', format: 'png', etag: null, lastModified: null }, 'web2');
      assert.equal(same.ok && same.row.toStage, 'live');
      const notModified = rowResult(row, { kind: 'not_modified', etag: '"e"', lastModified: null }, 'web2');
      assert.equal(notModified.ok && notModified.row.toStage, 'live');
      assert.equal(notModified.ok && notModified.row.set?.content_hash, undefined);
      // Asked only on the host holding the original (and so the thumbnails): a refresh cleared store_host, and a
      // live row of no host was never backfilled, nor claimed by a pusher once fs_check sent it back to push.
      for (const r of [same, notModified]) assert.equal(r.ok && r.row.set?.store_host, 'web2', JSON.stringify(r));
    });
    it('a 429 or 5xx with Retry-After pauses its host for that long, an hour at most; nothing else does', () => {
      const failed = (errorClass: string, retryAfterSeconds?: number) =>
        hostWaitOf({ kind: 'failed', failure: { reason: `HTTP ${errorClass}`, errorClass, retryable: true, retryAfterSeconds } });
      assert.deepEqual(failed('http_429', 120), { seconds: 120, status: 'HTTP http_429' });
      assert.deepEqual(
        failed('http_5xx', 86_400),
        { seconds: 3600, status: 'HTTP http_5xx' },
        "one URL's day-long Retry-After parks its row, not its host's feed, for a day",
      );
      assert.equal(failed('http_429'), null, 'no Retry-After: the row backs off alone');
      assert.equal(failed('http_404', 120), null);
      assert.equal(hostWaitOf({ kind: 'not_modified', etag: null, lastModified: null }), null);
    });
    it('a failure keeps its class and attempts', () => {
      assert.deepEqual(rowResult(row, { kind: 'failed', failure: { reason: 'HTTP 404', errorClass: 'http_404', retryable: false } }, ''), {
        ok: false,
        failure: { id: '7', attempts: 2, reason: 'HTTP 404', errorClass: 'http_404', retryable: false },
      });
    });
  });
});
