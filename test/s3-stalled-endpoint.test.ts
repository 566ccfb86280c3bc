// A stalled S3 endpoint (it accepts the connection and never answers, or stops in the middle of the body) is
// held to the downloader's limits as an HTTP server is: no answer within download.timeouts.firstByteSeconds is
// a timeout, a body not done within totalSeconds too, and the S3 client tries once (the queue retries). The
// buckets are a feed's own (operatedBy "source"), whose timeouts are the source's; of an endpoint we operate a
// timeout is our outage, s3_unavailable, with the same words.
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { parseConfig } from '../src/config/load-config.ts';
import { createDownloadClient } from '../src/download/download-client.ts';
import { SchemeFetcher } from '../src/download/fetch-by-scheme.ts';
import type { FetchOutcome } from '../src/download/fetch-original.ts';

/** A TCP server on 127.0.0.1 that counts connections and does `onRequest` with each socket's first bytes. */
async function tcpServer(onRequest: (socket: net.Socket) => void): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.once('data', () => onRequest(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('a stalled S3 endpoint', function () {
  this.timeout(30_000);
  const closers: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  function fetcherFor(
    buckets: Record<string, number>,
    timeouts: { connectSeconds: number; firstByteSeconds: number; totalSeconds: number },
    operatedBy: 'us' | 'source' = 'source',
  ) {
    const s3 = Object.fromEntries(
      Object.entries(buckets).map(([bucket, port]) => [bucket, { endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'k', secretAccessKey: 's', operatedBy }]),
    );
    const config = parseConfig({ database: { url: 'postgres://unused/db' }, download: { timeouts }, imaged: { s3 } }, {}, '/tmp');
    const http = createDownloadClient(config.download);
    const fetcher = new SchemeFetcher(http, config);
    closers.push(() => {
      fetcher.destroy();
      http.destroy();
    });
    return (url: string): Promise<FetchOutcome> =>
      fetcher.fetch({
        url,
        destination: '/tmp/lis-s3-stalled-never-written',
        maxBytes: 1_000_000,
        maxPixels: 50_000_000,
        totalMs: timeouts.totalSeconds * 1000,
      });
  }

  it('that never answers is a timeout waiting for the first byte (firstByteSeconds, as for HTTP), not held until totalSeconds; tried once', async () => {
    const silent = await tcpServer(() => {});
    closers.push(() => silent.close());
    // The total is far above the first-byte limit: reaching it would take the mocha timeout.
    const fetch = fetcherFor({ silent: silent.port }, { connectSeconds: 1, firstByteSeconds: 1, totalSeconds: 300 });
    const outcome = await fetch('s3://silent/x.jpg');
    assert.deepEqual(outcome, {
      kind: 'failed',
      failure: {
        reason: 'timeout: waiting for the first byte took too long (download.timeouts.firstByteSeconds)',
        errorClass: 'timeout',
        retryable: true,
      },
    });
    assert.equal(silent.connections(), 1, 'the SDK does not retry on its own');
    const ours = await fetcherFor({ silent: silent.port }, { connectSeconds: 1, firstByteSeconds: 1, totalSeconds: 300 }, 'us')('s3://silent/x.jpg');
    assert.deepEqual(ours, {
      kind: 'failed',
      failure: {
        reason: `S3 bucket silent unavailable at http://127.0.0.1:${silent.port} (imaged.s3 operatedBy "us": our outage, not the image's): timeout: waiting for the first byte took too long (download.timeouts.firstByteSeconds)`,
        errorClass: 's3_unavailable',
        retryable: true,
      },
    });
  });

  it('that stops in the middle of the body is cut at totalSeconds; tried once', async () => {
    const jpegStart = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00]);
    const dripping = await tcpServer((socket) =>
      socket.write(
        Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n'), jpegStart, Buffer.alloc(4000, 7)]),
      ),
    );
    closers.push(() => dripping.close());
    const fetch = fetcherFor({ dripping: dripping.port }, { connectSeconds: 1, firstByteSeconds: 1, totalSeconds: 2 });
    const outcome = await fetch('s3://dripping/x.jpg');
    assert.deepEqual(outcome, {
      kind: 'failed',
      failure: { reason: 'timeout: not done within 2 s (download.timeouts.totalSeconds)', errorClass: 'timeout', retryable: true },
    });
    assert.equal(dripping.connections(), 1, 'the SDK does not retry on its own');
  });
});
