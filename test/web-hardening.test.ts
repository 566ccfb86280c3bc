import assert from 'node:assert/strict';
import net from 'node:net';
import { exposedBindWarning, isLoopbackHost } from '../src/util/bind-address.ts';
import { hostHeaderCheck } from '../src/web/host-check.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** Sends raw bytes and collects whatever comes back until the server closes or answers in full. */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      answer += chunk;
      // One full answer is enough (keep-alive would hold the socket open).
      const m = /\r\n\r\n/.exec(answer);
      const length = /content-length: (\d+)/i.exec(answer);
      if (m && length && answer.length >= m.index + 4 + Number(length[1])) socket.end();
      if (m && /transfer-encoding: chunked/i.test(answer) && answer.endsWith('\r\n0\r\n\r\n')) socket.end();
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
    socket.write(bytes, 'latin1');
  });
}

const statusOf = (answer: string) => Number(/^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? 0);

describe('lis web survives malformed requests and answers only its own host names', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let web: Spawned;
  let port: number;
  const get = (path: string, host: string) => raw(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

  before(async () => {
    t = await createTestDatabase({ overrides: { metrics: { webHostNames: ['status.example.com'] } } });
    web = spawnTs('bin/lis', ['--config', t.writeConfig(), 'web', '--port', '0'], { LIS_DATABASE_URL: t.url });
    await waitFor(() => /status page at http:\/\/127\.0\.0\.1:(\d+)\//.test(web.output()), 30_000, 'lis web');
    port = Number(/status page at http:\/\/127\.0\.0\.1:(\d+)\//.exec(web.output())![1]);
  });
  after(async () => {
    web?.child.kill('SIGTERM');
    await web?.exited;
    await t?.drop();
  });

  it('answers garbage request lines with 400 (or closes) and keeps answering', async () => {
    const garbage = [
      'GET http://[ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
      'GET //[::1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
      'GARBAGE\r\n\r\n',
      '\x00\x01\x02\xff\r\n\r\n',
      'GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n',
      'GET /thumbs/%E0%A4%A HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: nope\r\n\r\n',
      'GET /api/lookup?q=%ZZ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    ];
    for (const request of garbage) {
      const answer = await raw(port, request);
      assert.ok(answer === '' || [200, 400, 404, 505].includes(statusOf(answer)), `${JSON.stringify(request)} -> ${answer.slice(0, 80)}`);
      assert.equal(statusOf(await get('/api/overview', '127.0.0.1')), 200, `still answering after ${JSON.stringify(request)}`);
    }
    assert.equal(web.child.exitCode, null, web.output());
    assert.doesNotMatch(web.output(), /Unhandled|TypeError|ERR_INVALID_URL/);
  });

  it('answers HEAD as GET without a body, and refuses other methods with 405 and Allow', async () => {
    const head = await raw(port, 'HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(head), 200, head);
    assert.match(head, /content-type: text\/html/i);
    assert.equal(head.slice(head.indexOf('\r\n\r\n') + 4), '', 'no body');
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const answer = await raw(port, `${method} /api/overview HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      assert.equal(statusOf(answer), 405, method);
      assert.match(answer, /^allow: GET, HEAD\r$/im, method);
    }
  });

  it('says why a lookup is refused: nothing given, or a URL longer than any queued one', async () => {
    for (const q of ['', '%20%20']) assert.match(await get(`/api/lookup?q=${q}`, '127.0.0.1'), /^HTTP\/1\.1 400[^]*give an image URL or hash/);
    const long = await get(`/api/lookup?q=http://x.example/${'a'.repeat(5000)}`, '127.0.0.1');
    assert.match(long, /^HTTP\/1\.1 400[^]*longer than enqueue\.maxUrlLength \(\d+ characters\)/);
  });

  it('refuses a Host header it does not know with 421 (DNS rebinding), and answers its own names and IP addresses', async () => {
    for (const host of ['rebind.attacker.example', 'rebind.attacker.example:8470', 'localhost.attacker.example']) {
      assert.equal(statusOf(await get('/api/overview', host)), 421, host);
    }
    for (const host of ['', 'a b']) assert.ok([400, 421].includes(statusOf(await get('/api/overview', host))), JSON.stringify(host));
    assert.match(await get('/', 'rebind.attacker.example'), /does not answer for host \\"rebind\.attacker\.example\\"/);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'testhost', 'status.example.com', 'STATUS.example.com.']) {
      assert.equal(statusOf(await get('/api/overview', host)), 200, host);
    }
    // HTTP/1.0 without a Host header: not a browser's request; refused too.
    assert.equal(statusOf(await raw(port, 'GET /api/overview HTTP/1.0\r\n\r\n')), 421);
  });

  it("says in one line, exit 1 and promptly, that a port is taken: lis web, a daemon's /metrics and lis_imaged", async () => {
    // The running lis web holds `port`. Before the fix: a stack trace, and lis web lingered ~10 s on its pool's idle connections.
    const second = spawnTs('bin/lis', ['--config', t.writeConfig(), 'web', '--port', String(port)], { LIS_DATABASE_URL: t.url });
    const timer = setTimeout(() => second.child.kill('SIGKILL'), 8_000);
    const { code, signal } = await second.exited;
    clearTimeout(timer);
    assert.equal(signal, null, `lis web did not exit by itself: ${second.output()}`);
    assert.equal(code, 1, second.output());
    assert.equal(
      second.output(),
      `error: lis web cannot listen on 127.0.0.1:${port}: EADDRINUSE: the port is already in use (another process listens there: stop it, or pick another port; 0 picks a free one)\n`,
    );
    const daemon = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', t.writeConfig(), '--metrics-port', String(port)], { LIS_DATABASE_URL: t.url });
    assert.equal((await daemon.exited).code, 1, daemon.output());
    assert.match(daemon.output(), /^error: downloadd \/metrics cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE: the port is already in use/m);
    assert.doesNotMatch(daemon.output(), /\n\s+at /, 'no stack trace');
    const imaged = spawnTs('bin/lis_imaged', ['--config', t.writeConfig(), '--port', String(port)], { LIS_DATABASE_URL: t.url });
    assert.equal((await imaged.exited).code, 1, imaged.output());
    assert.match(imaged.output(), /^error: lis_imaged cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE: the port is already in use/m);
    assert.doesNotMatch(imaged.output(), /\n\s+at /, 'no stack trace');
  });

  it('warns when bound beyond loopback', async () => {
    const wide = spawnTs('bin/lis', ['--config', t.writeConfig(), 'web', '--port', '0', '--host', '0.0.0.0'], { LIS_DATABASE_URL: t.url });
    try {
      await waitFor(() => /status page at/.test(wide.output()), 30_000, 'lis web on 0.0.0.0');
      await waitFor(() => /warning: lis web listens on 0\.0\.0\.0, beyond this machine/.test(wide.output()), 5_000, 'the warning');
    } finally {
      wide.child.kill('SIGTERM');
      await wide.exited;
    }
    assert.doesNotMatch(web.output(), /warning/);
    // A daemon's /metrics on 0.0.0.0 (an empty queue: it starts, warns, finds no work, exits).
    const daemon = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', t.writeConfig({ metrics: { host: '0.0.0.0' } }), '--metrics-port', '0'], {
      LIS_DATABASE_URL: t.url,
    });
    assert.equal((await daemon.exited).code, 0, daemon.output());
    assert.match(daemon.output(), /WARN \S+ Prometheus \/metrics listens on 0\.0\.0\.0, beyond this machine/);
    assert.equal(exposedBindWarning('x', '127.0.0.1'), null);
    assert.equal(exposedBindWarning('x', '::1'), null);
    assert.match(exposedBindWarning('Prometheus /metrics', '10.0.0.5')!, /^Prometheus \/metrics listens on 10\.0\.0\.5, beyond this machine/);
    assert.ok(isLoopbackHost('localhost') && isLoopbackHost('127.0.0.2') && !isLoopbackHost('::'));
    const check = hostHeaderCheck(['web1']);
    assert.ok(check('web1:8470') && check('10.1.2.3:8470') && check('[2001:db8::1]:80') && !check('web2') && !check(undefined) && !check('web1@evil'));
  });
});
