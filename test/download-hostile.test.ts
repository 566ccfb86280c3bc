import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { downloadConfigSchema } from '../src/config/download-config.ts';
import { createDownloadClient, type DownloadClient } from '../src/download/download-client.ts';
import { fetchOriginal, type FetchOutcome } from '../src/download/fetch-original.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { pixelBombPng } from './helpers/thumbnail-fixtures.ts';
import { rawHead, startHostileServer, type HostileServer, type RawHandler } from './helpers/hostile-server.ts';

/**
 * fetchOriginal against servers that break HTTP on purpose (raw sockets):
 * each case must end as the right failure class, quickly, with nothing left
 * in the store.
 */
describe('downloads from hostile servers', function () {
  this.timeout(10_000);
  let jpeg: Buffer;
  let dir: string;
  let server: HostileServer | null = null;
  let client: DownloadClient | null = null;

  before(async () => {
    jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 1, g: 2, b: 3 } } })
      .jpeg()
      .toBuffer();
  });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-hostile-'));
  });
  afterEach(async () => {
    client?.destroy();
    client = null;
    await server?.close();
    server = null;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function serve(routes: Record<string, RawHandler>): Promise<HostileServer> {
    server = await startHostileServer(routes);
    client = createDownloadClient(downloadConfigSchema.parse(TEST_DOWNLOAD), { noproxy: true });
    return server;
  }

  let n = 0;
  const fetch = (
    url: string,
    conditional?: { etag: string | null; lastModified: string | null },
    limits: { totalMs?: number; maxPixels?: number; maxBytes?: number } = {},
  ): Promise<FetchOutcome> =>
    fetchOriginal(client!, {
      url,
      destination: path.join(dir, `${n++}.jpg`),
      conditional,
      maxBytes: 1_000_000,
      totalMs: 2000,
      maxPixels: 50_000_000,
      ...limits,
    });
  const failure = (outcome: FetchOutcome) => {
    if (outcome.kind !== 'failed') assert.fail(`expected a failure, got ${JSON.stringify(outcome)}`);
    return outcome.failure;
  };

  it('sends again, on a fresh connection, when a reused keep-alive socket was closed by the server (not the source failing)', async () => {
    // Each connection serves one response and then, like a server whose keep-alive timeout ran out
    // just as our next request went out, drops the connection on the next request without a word.
    const s = await serve({
      '/a.jpg': (socket, { served }) => (
        served > 0 ? socket.destroy() : socket.write(rawHead('200 OK', { 'content-length': jpeg.length })),
        socket.write(jpeg)
      ),
    });
    assert.equal((await fetch(`${s.origin}/a.jpg?1`)).kind, 'stored');
    const second = await fetch(`${s.origin}/a.jpg?2`);
    assert.equal(second.kind, 'stored', JSON.stringify(second));
    assert.deepEqual(s.received, ['GET /a.jpg?1 HTTP/1.1', 'GET /a.jpg?2 HTTP/1.1', 'GET /a.jpg?2 HTTP/1.1']);
  });

  it('an unasked-for 304 is a status no image comes with, not a redirect; an asked-for one is not_modified', async () => {
    const s = await serve({ '/304.jpg': (socket) => socket.write(rawHead('304 Not Modified', { etag: '"v1"' })) });
    const f = failure(await fetch(`${s.origin}/304.jpg`));
    assert.equal(f.errorClass, 'http_status');
    assert.match(f.reason, /^HTTP 304 Not Modified: not a status an image comes with/);
    assert.equal(f.retryable, false);
    assert.equal((await fetch(`${s.origin}/304.jpg`, { etag: '"v1"', lastModified: null })).kind, 'not_modified');
  });

  it('a compressed body whose stream stops short is truncated (retried), one that is not compressed data is bad_encoding', async () => {
    const body = Buffer.concat([jpeg, crypto.randomBytes(50_000)]);
    const cut =
      (compressed: Buffer, encoding: string): RawHandler =>
      (socket) => {
        // No Content-Length, no chunks: the end of the connection is the end of the body, so only the
        // compressed stream itself can tell that it was cut.
        socket.write(rawHead('200 OK', { 'content-encoding': encoding, connection: 'close' }));
        socket.end(compressed.subarray(0, compressed.length >> 1));
      };
    const s = await serve({
      '/cut-gzip.jpg': cut(zlib.gzipSync(body), 'gzip'),
      '/cut-br.jpg': cut(zlib.brotliCompressSync(body), 'br'),
      '/cut-deflate-chunked.jpg': (socket) => {
        const half = zlib.deflateSync(body).subarray(0, 20_000);
        socket.write(rawHead('200 OK', { 'content-encoding': 'deflate', 'transfer-encoding': 'chunked' }));
        socket.write(`${half.length.toString(16)}\r\n`);
        socket.write(half);
        socket.write('\r\n0\r\n\r\n');
      },
      '/not-gzip.jpg': (socket) =>
        socket.write(rawHead('200 OK', { 'content-encoding': 'gzip', 'content-length': jpeg.length }) + jpeg.toString('latin1'), 'latin1'),
    });
    for (const p of ['/cut-gzip.jpg', '/cut-br.jpg', '/cut-deflate-chunked.jpg']) {
      const f = failure(await fetch(`${s.origin}${p}`));
      assert.equal(f.errorClass, 'truncated', `${p}: ${f.reason}`);
      assert.match(f.reason, /^truncated: the compressed body stops before its end/, p);
      assert.equal(f.retryable, true);
    }
    const f = failure(await fetch(`${s.origin}/not-gzip.jpg`));
    assert.equal(f.errorClass, 'bad_encoding', f.reason);
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it("a host name the resolver rejects (over 255 characters) is the URL's fault, bad_url, not our internal error", async () => {
    // Five labels of 60: each one legal, the whole name too long for getaddrinfo (EINVAL).
    const longHost = Array(5).fill('a'.repeat(60)).join('.');
    const s = await serve({
      '/long-host': (socket) => socket.write(rawHead('302 Found', { location: `http://${longHost}/x.jpg`, 'content-length': 0 })),
    });
    for (const url of [`http://${longHost}/x.jpg`, `${s.origin}/long-host`]) {
      const f = failure(await fetch(url));
      assert.equal(f.errorClass, 'bad_url', f.reason);
      assert.match(f.reason, /^bad URL: the host name cannot be looked up/);
      assert.equal(f.retryable, false);
    }
  });

  it("a response whose header block is over Node's limit is the server's fault and permanent (headers_too_large), not a connection to retry", async () => {
    const s = await serve({
      '/fat.jpg': (socket) =>
        socket.write(Buffer.concat([Buffer.from(rawHead('200 OK', { 'x-padding': 'a'.repeat(20_000), 'content-length': jpeg.length })), jpeg])),
    });
    const f = failure(await fetch(`${s.origin}/fat.jpg`));
    assert.deepEqual([f.errorClass, f.retryable], ['headers_too_large', false], f.reason);
    assert.match(f.reason, /^response headers too large: over Node's limit of 16384 bytes/);
    assert.equal(s.received.length, 1, 'asked once');
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it("an https URL whose port speaks plain HTTP is the source's TLS failure (tls, permanent), not our internal error retried for ever", async () => {
    // A real plain HTTP server: it answers the TLS ClientHello with a 400, which OpenSSL reads as a record
    // of a wrong version (EPROTO). Left unclassified it was `internal`: uncharged, given back every minute.
    const plain = http.createServer((_q, res) => res.end('plain'));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    try {
      await serve({});
      const f = failure(await fetch(`https://127.0.0.1:${(plain.address() as AddressInfo).port}/a.jpg`));
      assert.deepEqual([f.errorClass, f.retryable], ['tls', false], f.reason);
      assert.match(f.reason, /^TLS: wrong version number \(does the server speak TLS on this port\?\)$/);
      assert.deepEqual(fs.readdirSync(dir), []);
    } finally {
      plain.closeAllConnections();
      await new Promise((resolve) => plain.close(resolve));
    }
  });

  it('still fails a fresh connection that the server resets, without asking twice', async () => {
    const s = await serve({ '/reset.jpg': (socket) => socket.destroy() });
    const f = failure(await fetch(`${s.origin}/reset.jpg`));
    assert.equal(f.errorClass, 'connection');
    assert.equal(s.received.length, 1);
  });

  /** An interlaced PNG whose last IDAT is cut in half (chunk length and CRC fixed) and without IEND: a doubt the decoder refuses only at the end. */
  async function cutInterlacedPng(side: number): Promise<Buffer> {
    const png = await sharp({ create: { width: side, height: side, channels: 3, background: { r: 200, g: 100, b: 50 } } })
      .png({ progressive: true })
      .toBuffer();
    let last = -1;
    for (let at = 8; at < png.length; at += 12 + png.readUInt32BE(at)) if (png.toString('latin1', at + 4, at + 8) === 'IDAT') last = at;
    const data = png.subarray(last + 8, last + 8 + Math.floor(png.readUInt32BE(last) / 2));
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write('IDAT', 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), data])));
    return Buffer.concat([png.subarray(0, last), head, data, crc]);
  }

  const serveBytes =
    (body: Buffer): RawHandler =>
    (socket) =>
      socket.write(Buffer.concat([Buffer.from(rawHead('200 OK', { 'content-type': 'image/png', 'content-length': body.length })), body]));

  it("a whole file whose doubt the decoder cannot settle within the download's time is stored for the thumbnailer to judge, not decoded past the deadline", async function () {
    // 36 megapixels, interlaced: the decoder needs the whole picture (no shrink-on-load), well over the 0.25 s given here;
    // decoded to the end it would be refused (its data is cut), so a verdict means the decode outlived the deadline.
    this.timeout(30_000);
    const slow = await cutInterlacedPng(6000);
    const s = await serve({ '/slow.png': serveBytes(slow) });
    const outcome = await fetch(`${s.origin}/slow.png`, undefined, { totalMs: 250 });
    assert.equal(outcome.kind, 'stored', JSON.stringify(outcome));
    assert.match(outcome.kind === 'stored' ? (outcome.unverified ?? '') : '', /^PNG ends before its IEND chunk; not decoded within the download's time/);
    // With time to spare, the same file is refused by the decoder, as before.
    const judged = failure(await fetch(`${s.origin}/slow.png`, undefined, { totalMs: 20_000 }));
    assert.equal(judged.errorClass, 'corrupt_image', judged.reason);
  });

  it('a doubted file over thumbnail.maxPixels is not decoded by the download (a pixel bomb costs nothing); the thumbnailer refuses it', async () => {
    const bomb = pixelBombPng(2000, 2000).subarray(0, -12); // no IEND: doubted; its data would not fill 4 megapixels
    const s = await serve({ '/bomb.png': serveBytes(bomb) });
    const outcome = await fetch(`${s.origin}/bomb.png`, undefined, { maxPixels: 1_000_000 });
    assert.equal(outcome.kind, 'stored', JSON.stringify(outcome));
    assert.match(outcome.kind === 'stored' ? (outcome.unverified ?? '') : '', /2000x2000 is over thumbnail\.maxPixels/);
    const decoded = failure(await fetch(`${s.origin}/bomb.png`, undefined, { maxPixels: 50_000_000 }));
    assert.equal(decoded.errorClass, 'corrupt_image', decoded.reason);
  });
});
