// The shipped frontend config (nginx/imagesys-frontend.conf) in a real nginx, as a frontend's operator would
// meet it: lis_imaged down or hung, several lis_imaged, caching equal on a disk hit and a miss, odd paths.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import sharp from 'sharp';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { imagedConfigSchema } from '../src/config/imaged-config.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { startHostileServer, rawHead, type HostileServer, type RawHandler } from './helpers/hostile-server.ts';
import { OriginServer, photoJpeg, startNginx, type NginxOptions } from './helpers/imaged-fixtures.ts';
import { insertLiveRow, insertQueuedRow, rawGet, startImagedInProcess } from './helpers/imaged-in-process.ts';
import { thumbnailRelativePath, thumbnailStorePath } from '../src/store/store-layout.ts';
import { freePort } from './helpers/free-port.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** What lis_imaged sends by default; the config must say the same (README: keep them equal). */
const IMAGED_DEFAULTS = imagedConfigSchema.parse({});
/** The text the public gets for a 5xx of lis_imaged's, or when none answers (its own is for its operators). */
const PUBLIC_503 = 'this image cannot be served now; try again shortly\n';
const HASH = 'a30ff540c1d2e3f4a5b6c7d8e9f00112';
const thumb = (preset: string, ext = 'jpg') => `/uk/a3/0f/${HASH}_${preset}.${ext}`;
const PRESETS = {
  small: { width: 120, height: 90, mode: 'crop' as const },
  medium: { width: 320, height: 240, mode: 'pad' as const },
};

describe('the frontend nginx config in a real nginx', function () {
  this.timeout(60_000);
  const closers: Array<() => Promise<void> | void> = [];
  let dir: string;
  let root: string;
  let t: TestDatabase | undefined;

  beforeEach(() => {
    dir = fs.mkdtempSync('/tmp/lis-nginx-');
    root = path.join(dir, 'root');
    fs.mkdirSync(root);
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await t?.drop();
    t = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A real lis_imaged (in this process: real HTTP, database, sharp) behind the nginx. */
  async function imagedBehindNginx(imaged: LisConfigInput['imaged'] = {}) {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD, thumbnail: { presets: PRESETS }, imaged } });
    const imagedServer = await startImagedInProcess(t.config, t.db, t.url);
    closers.push(imagedServer.close);
    const nginx = await nginxTo(Number(new URL(imagedServer.url).port));
    return { t, imaged: imagedServer, nginx };
  }

  async function nginxTo(upstream: number | number[], options: NginxOptions = {}) {
    const nginx = await startNginx(path.join(dir, 'nginx'), root, upstream, options);
    closers.push(nginx.stop);
    return nginx;
  }

  async function standIn(routes: Parameters<typeof startHostileServer>[0]): Promise<HostileServer> {
    const server = await startHostileServer(routes);
    closers.push(() => server.close());
    return server;
  }

  /**
   * A port whose SYNs go unanswered, as a lis_imaged host that is powered off or cut off by a firewall: a
   * listener in a stopped process (it never accepts), its accept queue filled (backlog 1 holds 2 connections),
   * so the kernel drops every further SYN and a connect waits for its timeout.
   */
  async function silentPort(): Promise<number> {
    const script = `const net = require('net'), fs = require('fs');
      const s = net.createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
        fs.writeSync(1, s.address().port + '\\n');
        process.kill(process.pid, 'SIGSTOP');
      });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    closers.push(() => {
      const closed = once(child, 'close');
      child.kill('SIGKILL');
      return closed.then(() => {});
    });
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const port = Number(line.toString().trim());
    for (let i = 0; i < 2; i++) {
      const socket = net.connect(port, '127.0.0.1');
      closers.push(() => void socket.destroy());
      await once(socket, 'connect');
    }
    return port;
  }

  /** A file on the frontend's disk, as lis_pusherd leaves it. */
  function onDisk(rel: string, bytes: Buffer | string = 'jpeg bytes'): string {
    const file = path.join(root, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, bytes);
    return file;
  }

  /** The answer lis_imaged gives when it cannot make the image now (sendText's 503). */
  function assertTryAgain(answer: Awaited<ReturnType<typeof rawGet>>, what: string) {
    assert.equal(answer.status, 503, `${what}: ${answer.status} ${answer.body.toString()}`);
    assert.equal(answer.headers['retry-after'], String(IMAGED_DEFAULTS.retryAfterSeconds), what);
    assert.equal(answer.headers['cache-control'], 'no-store', what);
    assert.match(answer.headers['content-type'] ?? '', /^text\/plain/, what);
    assert.doesNotMatch(answer.body.toString(), /<html>/, what);
  }

  it("every lis_imaged down (connection refused): a miss and an origin path are 503 with Retry-After and no-store, not nginx's HTML 502", async () => {
    const nginx = await nginxTo(await freePort());
    assertTryAgain(await rawGet(nginx.url, thumb('small')), 'a thumbnail not on disk');
    assertTryAgain(await rawGet(nginx.url, '/web/small/a.jpg'), 'an origin path');
    const head = await rawGet(nginx.url, thumb('small'), { method: 'HEAD' });
    assert.deepEqual([head.status, head.headers['retry-after']], [503, String(IMAGED_DEFAULTS.retryAfterSeconds)]);
    // A hit does not need lis_imaged.
    onDisk(thumb('small'));
    assert.equal((await rawGet(nginx.url, thumb('small'))).status, 200);
  });

  it("lis_imaged hung (no answer within proxy_read_timeout): 503 with Retry-After, not nginx's HTML 504", async () => {
    const hung = await OriginServer.start(new Map());
    closers.push(() => hung.close());
    hung.held.add(thumb('small'));
    const nginx = await nginxTo(hung.port, { readTimeout: '1s' });
    assertTryAgain(await rawGet(nginx.url, thumb('small')), 'a miss lis_imaged never answers');
    assert.equal(hung.hits.get(thumb('small')), 1, 'asked once');
  });

  it("lis_imaged's own answers pass unchanged: 404 with the placeholder, 503 busy with its Retry-After (and the config's text), 405 with Allow, 304, HEAD", async () => {
    const placeholder = await sharp({ create: { width: 10, height: 10, channels: 3, background: '#ccc' } })
      .png()
      .toBuffer();
    const placeholderFile = path.join(dir, 'ph.png');
    fs.writeFileSync(placeholderFile, placeholder);
    const origin = await OriginServer.start(new Map([['/photo.jpg', await photoJpeg(300, 200)]]));
    closers.push(() => origin.close());
    const { t, nginx } = await imagedBehindNginx({ placeholder: placeholderFile, maxGenerations: 1, maxWaiting: 0, retryAfterSeconds: 7 });

    const none = await rawGet(nginx.url, thumb('small'));
    assert.deepEqual([none.status, none.headers['content-type'], none.headers['cache-control']], [404, 'image/png', 'no-store']);
    assert.deepEqual(none.body, placeholder);

    const post = await rawGet(nginx.url, thumb('small'), { method: 'POST' });
    assert.deepEqual([post.status, post.headers.allow], [405, 'GET, HEAD']);

    // One generation at a time and no waiting: a second miss while the first is made is lis_imaged's busy 503.
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));
    origin.held.add('/photo.jpg');
    const arrived = origin.arrival('/photo.jpg');
    const first = rawGet(nginx.url, row.pathOf('small'));
    await arrived;
    const busy = await rawGet(nginx.url, row.pathOf('medium'));
    assert.deepEqual([busy.status, busy.headers['retry-after']], [503, '7'], busy.body.toString());
    assert.equal(busy.body.toString(), PUBLIC_503, "the config's text: lis_imaged's is for its operators");
    origin.release();
    const made = await first;
    assert.equal(made.status, 200, made.body.toString());

    const again = await rawGet(nginx.url, row.pathOf('small'), { headers: { 'if-none-match': made.headers.etag } });
    assert.deepEqual([again.status, again.headers['x-imaged']], [304, 'store']);
    const head = await rawGet(nginx.url, row.pathOf('small'), { method: 'HEAD' });
    assert.deepEqual([head.status, head.headers['content-length'], head.body.length], [200, made.headers['content-length'], 0]);
  });

  it("lis_imaged's 5xx texts (a store's path, the bucket, the source's error) stay its operators': the public gets a short text, 503 with lis_imaged's Retry-After", async () => {
    const answers: Record<string, [string, Record<string, string | number>, string]> = {
      [thumb('small')]: ['503 Service Unavailable', { 'retry-after': 17 }, 'the originals store /srv/imagesys/originals is not mounted (our fault)\n'],
      [thumb('medium')]: ['502 Bad Gateway', {}, 'the source failed: http_500: HTTP 500 from s3.internal.example bucket lis-originals\n'],
      '/web/small/a.jpg': ['500 Internal Server Error', {}, 'internal error (logged): /srv/imagesys/thumbs\n'],
    };
    const upstream = await standIn(
      Object.fromEntries(
        Object.entries(answers).map(([p, [status, headers, body]]) => [
          p,
          (s) => s.write(rawHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length, ...headers }) + body),
        ]),
      ),
    );
    const nginx = await nginxTo(upstream.port);
    const seen = [];
    for (const p of Object.keys(answers)) {
      const answer = await rawGet(nginx.url, p);
      assert.doesNotMatch(answer.body.toString(), /srv|s3|bucket|source|http_500/, `${p}: ${answer.body.toString()}`);
      assert.equal(answer.headers['cache-control'], 'no-store', p);
      seen.push([answer.status, answer.headers['retry-after'], answer.body.toString()]);
    }
    assert.deepEqual(seen, [
      [503, '17', PUBLIC_503],
      [503, String(IMAGED_DEFAULTS.retryAfterSeconds), PUBLIC_503],
      [500, undefined, 'internal error\n'],
    ]);
    // Asked on its own port, lis_imaged still says what.
    const direct = await rawGet(`http://127.0.0.1:${upstream.port}`, thumb('small'));
    assert.match(direct.body.toString(), /not mounted/);
  });

  it('one thumbnail carries the same caching and validators from disk as from lis_imaged (imaged.cacheControl, no Expires)', async () => {
    const { t, nginx } = await imagedBehindNginx();
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/a.jpg', null, ['small']);
    const fromImaged = await rawGet(nginx.url, row.pathOf('small'));
    assert.deepEqual([fromImaged.status, fromImaged.headers['x-imaged']], [200, 'store']);
    // As lis_pusherd leaves it: the store's file with its mtime (rsync -t).
    const store = thumbnailStorePath(t.config, row.pathOf('small').slice(1));
    const file = onDisk(row.pathOf('small'), fs.readFileSync(store));
    const { mtime } = fs.statSync(store);
    fs.utimesSync(file, mtime, mtime);
    const fromDisk = await rawGet(nginx.url, row.pathOf('small'));
    assert.deepEqual([fromDisk.status, fromDisk.headers['x-imaged']], [200, undefined], 'a hit, served by nginx');
    const caching = (h: typeof fromDisk.headers) => ({
      'cache-control': h['cache-control'],
      expires: h.expires,
      etag: h.etag,
      'last-modified': h['last-modified'],
      'content-type': h['content-type'],
      'content-length': h['content-length'],
    });
    assert.deepEqual(caching(fromDisk.headers), caching(fromImaged.headers));
    assert.equal(fromDisk.headers['cache-control'], IMAGED_DEFAULTS.cacheControl);
    const notModified = await rawGet(nginx.url, row.pathOf('small'), { headers: { 'if-none-match': fromImaged.headers.etag } });
    assert.deepEqual([notModified.status, notModified.headers['cache-control'], notModified.headers.expires], [304, IMAGED_DEFAULTS.cacheControl, undefined]);
  });

  it('If-Modified-Since later than the file (a cache that sends its own fetch time) is 304 from disk as from lis_imaged (RFC 9110), not only the exact date', async () => {
    const { t, imaged, nginx } = await imagedBehindNginx();
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/a.jpg', null, ['small']);
    const store = thumbnailStorePath(t.config, row.pathOf('small').slice(1));
    const { mtime } = fs.statSync(store);
    const file = onDisk(row.pathOf('small'), fs.readFileSync(store));
    fs.utimesSync(file, mtime, mtime);
    const ask = (base: string, date: Date) => rawGet(base, row.pathOf('small'), { headers: { 'if-modified-since': date.toUTCString() } });
    const later = new Date(mtime.getTime() + 3600_000);
    const earlier = new Date(mtime.getTime() - 3600_000);
    assert.equal((await ask(imaged.url, later)).status, 304, 'lis_imaged');
    assert.equal((await ask(nginx.url, later)).status, 304, 'nginx, from disk');
    assert.equal((await ask(imaged.url, earlier)).status, 200, 'lis_imaged: changed since');
    assert.equal((await ask(nginx.url, earlier)).status, 200, 'nginx: changed since');
  });

  it('a path lis_imaged refuses (dot segments, encoded slashes, backslashes, doubled slashes) is 400 from nginx too, hit or miss; a query string is no part of it', async () => {
    const upstream = await standIn({});
    const nginx = await nginxTo(upstream.port);
    onDisk(thumb('small'));
    const name = `${HASH}_small.jpg`;
    for (const bad of [
      `/uk/a3%2f0f/${name}`,
      `/uk/a3%2F0f/${name}`,
      `/uk/a3/0f/..%2f0f/${name}`,
      `/uk/a3/xx/../0f/${name}`,
      `/uk/a3/./0f/${name}`,
      `/uk/a3/0f/%2e%2e/0f/${name}`,
      `//uk/a3/0f/${name}`,
      `/uk/a3//0f/${name}`,
      `/uk/a3/0f%5c..%5c0f/${name}`,
      `/uk/a3/0f\\..\\0f/${name}`,
      `/uk/a3/0f/${name}%00.jpg`,
    ]) {
      for (const p of [bad, bad.replace('_small', '_medium')]) assert.equal((await rawGet(nginx.url, p)).status, 400, p);
    }
    assert.deepEqual(upstream.received, [], 'none reached lis_imaged');
    // The same characters in a query (a cache-buster, a tracking tag) are not the path's.
    const hit = await rawGet(nginx.url, `${thumb('small')}?from=http://a.example//x/../y%2F`);
    assert.equal(hit.status, 200);
    const miss = await rawGet(nginx.url, `${thumb('medium')}?v=..//`);
    assert.equal(miss.status, 404, 'passed to lis_imaged (here a stand-in that has nothing)');
    assert.deepEqual(upstream.received, [`GET ${thumb('medium')}?v=..// HTTP/1.1`], 'the query goes with it');
  });

  it('a method other than GET or HEAD on a thumbnail on disk is 405 with Allow: GET, HEAD, as lis_imaged answers a miss', async () => {
    const upstream = await standIn({});
    const nginx = await nginxTo(upstream.port);
    onDisk(thumb('small'));
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      const answer = await rawGet(nginx.url, thumb('small'), { method });
      assert.deepEqual([answer.status, answer.headers.allow], [405, 'GET, HEAD'], method);
      assert.doesNotMatch(answer.body.toString(), /<html>/, method);
    }
    assert.deepEqual(upstream.received, [], 'answered by nginx');
    const head = await rawGet(nginx.url, thumb('small'), { method: 'HEAD' });
    assert.deepEqual([head.status, head.headers.allow], [200, undefined]);
  });

  it('several lis_imaged: one down costs no request (the next is asked); a busy 503 is passed on, not retried on another; connections are kept alive', async () => {
    const busy = 'busy: 3 generations running, 100 waiting\n';
    let reused = 0;
    const made: (tag: string) => RawHandler = (tag) => (s, request) => {
      if (request.served > 0) reused++;
      s.write(rawHead('200 OK', { 'content-type': 'image/jpeg', 'content-length': tag.length }) + tag);
    };
    const a = await standIn({
      [thumb('small')]: made('A'),
      [thumb('medium')]: (s) => s.write(rawHead('503 Service Unavailable', { 'retry-after': 5, 'content-length': busy.length }) + busy),
    });
    const b = await standIn({
      [thumb('small')]: made('B'),
      [thumb('medium')]: (s) => s.write(rawHead('503 Service Unavailable', { 'retry-after': 5, 'content-length': busy.length }) + busy),
    });
    const nginx = await nginxTo([await freePort(), a.port, b.port]);
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await rawGet(nginx.url, thumb('small')));
    assert.deepEqual(
      answers.map((r) => r.status),
      [200, 200, 200, 200, 200, 200],
    );
    assert.deepEqual(new Set(answers.map((r) => r.body.toString())), new Set(['A', 'B']), 'both live ones answer');
    assert.ok(reused > 0, 'upstream keepalive: a connection to lis_imaged served more than one request');
    for (let i = 0; i < 4; i++) {
      const answer = await rawGet(nginx.url, thumb('medium'));
      assert.deepEqual([answer.status, answer.headers['retry-after'], answer.body.toString()], [503, '5', PUBLIC_503]);
    }
    const asked = (server: HostileServer, p: string) => server.received.filter((l) => l.includes(p)).length;
    assert.equal(asked(a, thumb('medium')) + asked(b, thumb('medium')), 4, 'each busy answer from one lis_imaged, none retried');
  });

  it('a lis_imaged host that is silent (SYNs dropped: powered off, firewalled) is given up within seconds for the next, not after 60 s', async () => {
    const good = await standIn({ [thumb('small')]: (s) => s.write(rawHead('200 OK', { 'content-type': 'image/jpeg', 'content-length': 1 }) + 'B') });
    const silent = await silentPort();
    const nginx = await nginxTo([silent, good.port]);
    // Round robin asks the first listed, the silent one, first. nginx's default proxy_connect_timeout is 60 s.
    const deadline = (ms: number) => new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref());
    const answer = await Promise.race([rawGet(nginx.url, thumb('small')), deadline(20_000)]);
    assert.deepEqual([answer.status, answer.body.toString()], [200, 'B']);
    assert.equal(good.received.length, 1);
    const errors = fs.readFileSync(path.join(dir, 'nginx/logs/error.log'), 'utf8');
    assert.match(errors, /upstream timed out \(110: Connection timed out\) while connecting to upstream/);
  });

  it('every lis_imaged silent: 503 with Retry-After within seconds', async () => {
    const nginx = await nginxTo(await silentPort());
    const deadline = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 20 s')), 20_000).unref());
    assertTryAgain(await Promise.race([rawGet(nginx.url, thumb('small')), deadline]), 'a miss with the one lis_imaged silent');
  });

  it("lis_imaged's /metrics and /healthz stay private however the path is written; very long paths; a missing root sends every thumbnail to lis_imaged", async () => {
    const secret = 'lis_imaged_requests_total 1\n';
    const page: RawHandler = (s) => s.write(rawHead('200 OK', { 'content-length': secret.length }) + secret);
    const upstream = await standIn({ '/metrics': page, '/healthz': page });
    fs.rmSync(root, { recursive: true });
    const nginx = await nginxTo(upstream.port);
    for (const p of ['/metrics', '/healthz', '/metrics?x=1', '/%6Detrics', '/%68ealthz', '/web/../metrics', '//metrics', '/metrics/.']) {
      const answer = await rawGet(nginx.url, p);
      assert.ok([400, 404].includes(answer.status), `${p}: ${answer.status}`);
      assert.doesNotMatch(answer.body.toString(), /lis_imaged_requests_total/, p);
    }
    assert.deepEqual(upstream.received, [], 'none reached lis_imaged');
    // Longer than lis_imaged takes (1024) goes to it (its 400); longer than nginx's header buffers (8k) is nginx's 414.
    assert.equal((await rawGet(nginx.url, `/web/small/${'a'.repeat(2000)}.jpg`)).status, 404, 'passed to the stand-in');
    assert.equal((await rawGet(nginx.url, `/web/small/${'a'.repeat(9000)}.jpg`)).status, 414);
    assert.equal(upstream.received.length, 1);
    // No root (a frontend disk not mounted): nginx serves no file and asks lis_imaged for each.
    assert.equal((await rawGet(nginx.url, thumb('small'))).status, 404);
    assert.equal(upstream.received.at(-1), `GET ${thumb('small')} HTTP/1.1`);
  });

  it("thumbnails are not gzipped, from disk or from lis_imaged, even where the frontend's nginx.conf gzips every type", async () => {
    const jpeg = await photoJpeg(300, 200);
    const upstream = await standIn({
      [thumb('medium')]: (s) => {
        s.write(rawHead('200 OK', { 'content-type': 'image/jpeg', 'content-length': jpeg.length, etag: '"1-2"' }));
        s.write(jpeg);
      },
    });
    const nginx = await nginxTo(upstream.port, { http: 'gzip_types *; gzip_proxied any; gzip_min_length 1;' });
    onDisk(thumb('small'), jpeg);
    const hit = await rawGet(nginx.url, thumb('small'), { headers: { 'accept-encoding': 'gzip' } });
    assert.deepEqual([hit.status, hit.headers['content-encoding']], [200, undefined]);
    assert.doesNotMatch(hit.headers.etag ?? '', /^W\//, 'a strong ETag, as lis_imaged gives');
    assert.deepEqual(hit.body, jpeg);
    const miss = await rawGet(nginx.url, thumb('medium'), { headers: { 'accept-encoding': 'gzip' } });
    assert.deepEqual([miss.status, miss.headers['content-encoding'], miss.headers.etag], [200, undefined, '"1-2"']);
    assert.deepEqual(miss.body, jpeg);
  });

  it("a twin on disk has its image type whatever the frontend's mime.types knows (nginx 1.18's has no avif), as lis_imaged sends it", async () => {
    const upstream = await standIn({});
    const nginx = await nginxTo(upstream.port, { types: 'image/jpeg jpeg jpg; image/webp webp;' });
    const types = { jpg: 'image/jpeg', webp: 'image/webp', avif: 'image/avif' };
    for (const [ext, type] of Object.entries(types)) {
      onDisk(thumb('small', ext));
      const answer = await rawGet(nginx.url, thumb('small', ext));
      assert.deepEqual([answer.status, answer.headers['content-type']], [200, type], ext);
    }
    assert.deepEqual(upstream.received, []);
  });

  it('the thumbnail location serves from disk every name lis_pusherd pushes (store-layout: presets of 1 to 16 characters, versions, twins), and nothing else of the root', async () => {
    const upstream = await standIn({});
    const nginx = await nginxTo(upstream.port);
    const names: string[] = [];
    for (const preset of ['s', 'small', 'x1234567890abcde'])
      for (const version of [1, 2, 10, 123456])
        for (const ext of ['jpg', 'webp', 'avif']) names.push(`/${thumbnailRelativePath('uk', HASH, preset, ext, version)}`);
    names.push(`/${thumbnailRelativePath('usa', HASH, 'small', 'jpg')}`);
    for (const name of names) {
      onDisk(name, name);
      const answer = await rawGet(nginx.url, name);
      assert.deepEqual([answer.status, answer.body.toString(), answer.headers['cache-control']], [200, name, IMAGED_DEFAULTS.cacheControl], name);
    }
    assert.deepEqual(upstream.received, [], 'all from disk');
    // Files in the root that are not thumbnails (the push marker, a partial rsync file, a name no preset can have)
    // are never sent from disk: lis_imaged is asked, and refuses them.
    for (const other of [
      '/.imagesys-frontend',
      `/uk/a3/0f/.${HASH}_small.jpg.Ab12Cd`,
      `/uk/a3/0f/${HASH}_x1234567890abcdef.jpg`,
      `/uk/a3/0f/${HASH}_small.png`,
    ]) {
      onDisk(other, 'not served');
      assert.equal((await rawGet(nginx.url, other)).status, 404, other);
    }
    assert.equal(upstream.received.length, 4);
  });
});
