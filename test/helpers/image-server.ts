import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import zlib from 'node:zlib';
import sharp from 'sharp';

/** Test images made with sharp: small, real, decodable. */
export interface TestImages {
  jpeg: Buffer;
  png: Buffer;
  webp: Buffer;
  gif: Buffer;
  avif: Buffer;
  /** A different JPEG (a refresh that changed). */
  jpeg2: Buffer;
  /** Complete downloads with a damaged trailer that the decoder reads without a warning. */
  gifNoTrailer: Buffer;
  pngBadIendType: Buffer;
  jpegEndsFfc9: Buffer;
}

/** Trailers damaged as found on the web: the image data is whole, its last marker is not. */
function damagedTrailers(gif: Buffer, png: Buffer, jpeg: Buffer): Pick<TestImages, 'gifNoTrailer' | 'pngBadIendType' | 'jpegEndsFfc9'> {
  const pngBadIendType = Buffer.from(png);
  pngBadIendType.write('IEXD', png.length - 8, 'latin1');
  const jpegEndsFfc9 = Buffer.from(jpeg);
  jpegEndsFfc9[jpeg.length - 1] = 0xc9;
  return { gifNoTrailer: gif.subarray(0, gif.length - 1), pngBadIendType, jpegEndsFfc9 };
}

export async function makeTestImages(): Promise<TestImages> {
  const base = (r: number) => sharp({ create: { width: 64, height: 48, channels: 3, background: { r, g: 120, b: 200 } } });
  const made = {
    jpeg: await base(10).jpeg().toBuffer(),
    png: await base(20).png().toBuffer(),
    webp: await base(30).webp().toBuffer(),
    gif: await base(40).gif().toBuffer(),
    avif: await base(50).avif().toBuffer(),
    jpeg2: await base(200).jpeg().toBuffer(),
  };
  return { ...made, ...damagedTrailers(made.gif, made.png, made.jpeg) };
}

export interface ImageServer {
  /** `http://127.0.0.1:PORT` */
  origin: string;
  port: number;
  url(path: string): string;
  /** Requests per path (without query), and the last request's headers per path. */
  hits: Map<string, number>;
  lastHeaders: Map<string, http.IncomingHttpHeaders>;
  /** TCP connections accepted: keep-alive means far fewer than requests. */
  connections(): number;
  /** Most requests in progress at once, over the server's life. */
  maxActive: number;
  /** What /etag.jpg serves: bump to "change" the image. */
  etagVersion: number;
  close(): Promise<void>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, server: ImageServer) => void;

/**
 * A real HTTP server on 127.0.0.1 (a random port) serving every case the
 * downloader must survive: good images of each format, error statuses,
 * throttling, bodies that never end or drip, a lying Content-Length,
 * redirect loops and redirects to refused addresses, HTML dressed as JPEG,
 * a truncated JPEG, gzip, and ETag/304.
 */
export async function startImageServer(images: TestImages, options: { dripMs?: number } = {}): Promise<ImageServer> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const timers = new Set<NodeJS.Timeout>();
  const flaky = new Map<string, number>();
  const send = (res: http.ServerResponse, body: Buffer, type = 'image/jpeg', extra: http.OutgoingHttpHeaders = {}) => {
    res.writeHead(200, { 'content-type': type, 'content-length': body.length, ...extra });
    res.end(body);
  };
  const html = Buffer.from('<!DOCTYPE html>\n<html><head><title>Not Found</title></head><body>Sorry, this listing has gone.</body></html>\n');

  const routes: Record<string, Handler> = {
    '/good.jpg': (_q, res) => send(res, images.jpeg),
    '/good.png': (_q, res) => send(res, images.png, 'image/png'),
    '/good.webp': (_q, res) => send(res, images.webp, 'image/webp'),
    '/good.gif': (_q, res) => send(res, images.gif, 'image/gif'),
    '/good.avif': (_q, res) => send(res, images.avif, 'image/avif'),
    // Wrong or missing Content-Type does not matter: the bytes do.
    '/untyped.png': (_q, res) => send(res, images.png, 'text/plain'),
    '/404': (_q, res) => res.writeHead(404, { 'content-type': 'text/html' }).end(html),
    '/410': (_q, res) => res.writeHead(410).end('gone'),
    '/403': (_q, res) => res.writeHead(403).end('forbidden'),
    '/500': (_q, res) => res.writeHead(500).end('oops'),
    // 500 the first time for each query string, then the image.
    '/flaky.jpg': (req, res) => {
      const n = (flaky.get(req.url!) ?? 0) + 1;
      flaky.set(req.url!, n);
      if (n === 1) res.writeHead(500).end('try later');
      else send(res, images.jpeg);
    },
    '/429': (_q, res) => res.writeHead(429, { 'retry-after': '120' }).end('slow down'),
    // A source whose clock is 10 minutes behind ours: its Retry-After date is 2 minutes after its own Date.
    '/429-behind': (_q, res) => {
      const its = Math.floor(Date.now() / 1000) * 1000 - 600_000;
      res.writeHead(429, { date: new Date(its).toUTCString(), 'retry-after': new Date(its + 120_000).toUTCString() }).end('slow down');
    },
    '/503': (_q, res) => res.writeHead(503, { 'retry-after': new Date(Date.now() + 600_000).toUTCString() }).end('maintenance'),
    // A JPEG start, then zeros for ever, as fast as the client reads.
    '/endless.jpg': (_q, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      const chunk = Buffer.alloc(64 * 1024);
      res.write(images.jpeg.subarray(0, 20));
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    },
    // A byte at a time, slowly: alive, but never done.
    '/drip.jpg': (_q, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': images.jpeg.length });
      let i = 0;
      const timer = setInterval(() => {
        if (res.destroyed || i >= images.jpeg.length) {
          clearInterval(timer);
          timers.delete(timer);
          return;
        }
        res.write(images.jpeg.subarray(i, ++i));
      }, options.dripMs ?? 200);
      timers.add(timer);
    },
    // Says 50,000 bytes, sends the first part of the image and hangs up.
    '/lying-length.jpg': (req, res) => {
      const socket = req.socket;
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 50000\r\n\r\n`);
      socket.end(images.jpeg.subarray(0, Math.min(400, images.jpeg.length - 10)));
      res.on('error', () => {});
    },
    // Claims to be huge: refused before reading.
    '/huge-declared.jpg': (req, _res) => {
      req.socket.write(`HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 99999999999\r\n\r\n`);
      req.socket.write(images.jpeg.subarray(0, 100));
    },
    '/loop-a': (_q, res) => res.writeHead(302, { location: '/loop-b' }).end(),
    '/loop-b': (_q, res) => res.writeHead(302, { location: '/loop-a' }).end(),
    '/redirect-good': (_q, res) => res.writeHead(301, { location: '/good.jpg' }).end(),
    // 127.0.0.2 is loopback too, but not in the tests' allow list.
    '/redirect-loopback': (_q, res, s) => res.writeHead(302, { location: `http://127.0.0.2:${s.port}/good.jpg` }).end(),
    '/redirect-mapped': (_q, res, s) => res.writeHead(302, { location: `http://[::ffff:127.0.0.1]:${s.port}/good.jpg` }).end(),
    '/redirect-metadata': (_q, res) => res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end(),
    '/redirect-ftp': (_q, res) => res.writeHead(302, { location: 'ftp://127.0.0.1/x.jpg' }).end(),
    '/html-as-jpeg.jpg': (_q, res) => send(res, html, 'image/jpeg'),
    '/empty.jpg': (_q, res) => send(res, Buffer.alloc(0)),
    // Complete transfers (honest Content-Length) of a file stored cut short: a retry gets the same bytes.
    '/truncated.jpg': (_q, res) => send(res, images.jpeg.subarray(0, Math.floor(images.jpeg.length * 0.6))),
    '/truncated.png': (_q, res) => send(res, images.png.subarray(0, Math.floor(images.png.length * 0.6)), 'image/png'),
    // Complete transfers with a damaged trailer that the decoder reads: these must go live.
    '/no-trailer.gif': (_q, res) => send(res, images.gifNoTrailer, 'image/gif'),
    '/bad-iend.png': (_q, res) => send(res, images.pngBadIendType, 'image/png'),
    '/ffc9.jpg': (_q, res) => send(res, images.jpegEndsFfc9),
    // More bytes than the Content-Length says.
    '/overlong.jpg': (req, res) => {
      req.socket.write(`HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: ${images.jpeg.length}\r\n\r\n`);
      req.socket.end(Buffer.concat([images.jpeg, Buffer.from('and then some bytes nobody announced')]));
      res.on('error', () => {});
    },
    // Chunked, the whole image in one chunk, then the connection closes without the last (zero) chunk.
    '/chunked-cut.jpg': (req, res) => {
      req.socket.write(`HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n`);
      req.socket.end(Buffer.concat([Buffer.from(`${images.jpeg.length.toString(16)}\r\n`), images.jpeg, Buffer.from('\r\n')]));
      res.on('error', () => {});
    },
    // Half the body, then a TCP reset.
    '/reset.jpg': (req, res) => {
      req.socket.write(`HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: ${images.jpeg.length}\r\n\r\n`);
      req.socket.write(images.jpeg.subarray(0, images.jpeg.length >> 1), () => req.socket.resetAndDestroy());
      res.on('error', () => {});
    },
    '/gzip.jpg': (_q, res) => {
      const body = zlib.gzipSync(images.jpeg);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': 'gzip', 'content-length': body.length });
      res.end(body);
    },
    '/bad-gzip.jpg': (_q, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': 'gzip' });
      res.end(Buffer.concat([zlib.gzipSync(images.jpeg).subarray(0, 10), Buffer.from('not gzip at all')]));
    },
    '/slow-headers.jpg': (_q, res) => {
      const timer = setTimeout(() => send(res, images.jpeg), 10_000);
      timers.add(timer);
      res.on('close', () => clearTimeout(timer));
    },
    // ETag and Last-Modified; 304 when the client has the current version.
    '/etag.jpg': (req, res, s) => {
      const etag = `"v${s.etagVersion}"`;
      const lastModified = new Date(Date.UTC(2026, 0, s.etagVersion)).toUTCString();
      if (req.headers['if-none-match'] === etag) return void res.writeHead(304, { etag, 'last-modified': lastModified }).end();
      send(res, s.etagVersion === 1 ? images.jpeg : images.jpeg2, 'image/jpeg', { etag, 'last-modified': lastModified });
    },
    // Holds each request a while, so that the client's concurrency shows in maxActive.
    '/slow-ok.jpg': (_q, res) => {
      const timer = setTimeout(() => send(res, images.jpeg), 150);
      timers.add(timer);
    },
    // No validators, same bytes each time: a refresh finds the same content hash.
    '/same.jpg': (_q, res) => send(res, images.jpeg),
  };

  const state = {
    hits: new Map<string, number>(),
    lastHeaders: new Map<string, http.IncomingHttpHeaders>(),
    etagVersion: 1,
    maxActive: 0,
  };
  let active = 0;
  const server = http.createServer({ keepAlive: true, keepAliveTimeout: 5000 }, (req, res) => {
    const path = new URL(req.url!, 'http://x').pathname;
    state.hits.set(path, (state.hits.get(path) ?? 0) + 1);
    state.lastHeaders.set(path, req.headers);
    state.maxActive = Math.max(state.maxActive, ++active);
    res.on('close', () => active--);
    const route = routes[path];
    if (!route) return void res.writeHead(404).end('no such route');
    route(req, res, api);
  });
  server.on('connection', (socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const api: ImageServer = Object.assign(state, {
    origin: `http://127.0.0.1:${port}`,
    port,
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    connections: () => accepted,
    close: async () => {
      for (const timer of timers) clearInterval(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
  return api;
}
