import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import sharp from 'sharp';
import { downloadConfigSchema } from '../src/config/download-config.ts';
import { createDownloadClient, type DownloadClient } from '../src/download/download-client.ts';
import { fetchOriginal } from '../src/download/fetch-original.ts';
import { redirectKeepsCredentials } from '../src/download/redirect-credentials.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';

/** The tests' certificate for localhost and 127.0.0.1 (made once with openssl, valid to 2126), trusted by this test's requests only. */
const TLS = path.join(import.meta.dirname, 'fixtures', 'tls');
const cert = fs.readFileSync(path.join(TLS, 'server.crt'));
const key = fs.readFileSync(path.join(TLS, 'server.key'));

/**
 * HTTPS and plain HTTP on one port, as a source's host answers both on their default ports: a URL says no port
 * for either, so `https://host/` -> `http://host/` is a redirect to the same host and port as got compares them.
 * The first byte of a connection tells which (0x16: a TLS handshake).
 */
async function startBothSchemes(handler: http.RequestListener): Promise<{ port: number; close: () => Promise<void> }> {
  const plain = http.createServer(handler);
  const secure = https.createServer({ cert, key }, handler);
  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.once('data', (first) => {
      // The servers get a stream of their own that starts with the byte read: handed the socket itself, the TLS
      // server reads its handle and never sees what was read of it already.
      const stream = new Duplex({
        read: () => socket.resume(),
        write: (chunk: Buffer, _encoding, done) => socket.write(chunk, done),
        final: (done) => socket.end(done),
        destroy: (error, done) => (socket.destroy(), done(error)),
      });
      stream.push(first);
      socket.on('data', (data) => stream.push(data) || socket.pause());
      socket.on('end', () => stream.push(null));
      socket.on('close', () => stream.destroy());
      (first[0] === 0x16 ? secure : plain).emit('connection', stream);
    });
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  return {
    port: (front.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => front.close(resolve));
    },
  };
}

describe("a redirect keeps the image URL's credentials only on the same scheme, host and port", () => {
  it('drops them on a change of scheme (https -> http on the same host), host or port; keeps them otherwise', () => {
    const keeps = (from: string, to: string) => redirectKeepsCredentials(new URL(from), new URL(to));
    assert.equal(keeps('https://photos.example.com/a.jpg', 'https://photos.example.com/b.jpg'), true);
    assert.equal(keeps('https://photos.example.com/a.jpg', 'http://photos.example.com/b.jpg'), false);
    assert.equal(keeps('https://photos.example.com:8443/a.jpg', 'http://photos.example.com:8443/b.jpg'), false);
    assert.equal(keeps('http://photos.example.com/a.jpg', 'https://photos.example.com/b.jpg'), false);
    assert.equal(keeps('https://photos.example.com/a.jpg', 'https://cdn.example.com/b.jpg'), false);
    assert.equal(keeps('https://photos.example.com/a.jpg', 'https://photos.example.com:8443/b.jpg'), false);
    // The default port written out is the same port.
    assert.equal(keeps('https://photos.example.com:443/a.jpg', 'https://photos.example.com/b.jpg'), true);
  });

  it('a real https source that redirects to http on its own host and port gets no password in clear text; the image is still fetched', async () => {
    const jpeg = await sharp({ create: { width: 32, height: 24, channels: 3, background: '#345' } })
      .jpeg()
      .toBuffer();
    const asked: Array<{ secure: boolean; path: string; authorization: string | undefined }> = [];
    const server = await startBothSchemes((req, res) => {
      const secure = (req.socket as { encrypted?: boolean }).encrypted === true;
      asked.push({ secure, path: req.url!, authorization: req.headers.authorization });
      if (secure) res.writeHead(302, { location: `http://127.0.0.1:${server.port}/plain.jpg` }).end();
      else res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length }).end(jpeg);
    });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-redirect-'));
    const client: DownloadClient = createDownloadClient(downloadConfigSchema.parse(TEST_DOWNLOAD), { noproxy: true });
    try {
      // Our own client, with its hooks, trusting the test's certificate (the agent takes the request's CA).
      const trusting = { ...client, got: client.got.extend({ https: { certificateAuthority: cert } }) };
      const outcome = await fetchOriginal(trusting, {
        url: `https://feed:s3cret@127.0.0.1:${server.port}/secure.jpg`,
        destination: path.join(dir, 'a.jpg'),
        maxBytes: 1_000_000,
        totalMs: 5000,
        maxPixels: 50_000_000,
      });
      assert.equal(outcome.kind, 'stored', JSON.stringify(outcome));
      assert.deepEqual(
        asked.map((a) => [a.secure, a.path, a.authorization]),
        [
          [true, '/secure.jpg', `Basic ${Buffer.from('feed:s3cret').toString('base64')}`],
          [false, '/plain.jpg', undefined],
        ],
      );
    } finally {
      client.destroy();
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
