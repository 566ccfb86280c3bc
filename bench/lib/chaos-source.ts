import http from 'node:http';
import sharp from 'sharp';
import { freePort } from '../../test/helpers/free-port.ts';

/** The ways a URL of the chaos run is bad, and the failure class each must end with. */
export const BAD_KINDS = {
  missing: 'http_404',
  html: 'not_image',
  corrupt: 'corrupt_image',
  slow: 'timeout',
  huge: 'too_large',
  refused: 'refused_address',
} as const;
export type BadKind = keyof typeof BAD_KINDS;

/** A distinct small photo per number (gradient, a shape, a label), as JPEG. */
export async function chaosPhoto(n: number): Promise<Buffer> {
  const hue = (n * 47) % 360;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="480" height="320">
    <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="hsl(${hue},60%,70%)"/><stop offset="1" stop-color="hsl(${(hue + 120) % 360},50%,35%)"/></linearGradient></defs>
    <rect width="480" height="320" fill="url(#g)"/>
    <circle cx="${80 + (n % 320)}" cy="${60 + ((n * 13) % 200)}" r="${20 + (n % 40)}" fill="hsl(${(hue + 200) % 360},70%,50%)"/>
    <text x="20" y="300" font-family="sans-serif" font-size="28" fill="#fff">${n}</text></svg>`;
  return sharp(Buffer.from(svg)).jpeg({ quality: 85 }).toBuffer();
}

/**
 * The feeds of the chaos run, on 127.0.0.1: /ok/<n>.jpg photos, and the bad
 * kinds at /<kind>/<n>.jpg (a refused address is never served: it points at a
 * private network and must be refused before any connection).
 */
export async function startChaosSource(): Promise<{ base: string; slowBase: string; requests: () => number; close: () => Promise<void> }> {
  const cache = new Map<number, Buffer>();
  let requests = 0;
  const timers = new Set<NodeJS.Timeout>();
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    requests++;
    const m = /^\/(\w+)\/(\d+)\.jpg$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    const [, kind, num] = m;
    const n = Number(num);
    if (kind === 'ok') {
      const body = cache.get(n) ?? (await chaosPhoto(n));
      cache.set(n, body);
      return void res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': body.length }).end(body);
    }
    if (kind === 'missing') return void res.writeHead(404).end('no such photo');
    if (kind === 'html') return void res.writeHead(200, { 'Content-Type': 'image/jpeg' }).end('<!DOCTYPE html><html><body>listing removed</body></html>');
    if (kind === 'corrupt') {
      // A whole JPEG with a piece cut out of its compressed data: it downloads complete (start and
      // end markers in place), and the decoder must refuse what is inside.
      const photo = cache.get(n) ?? (await chaosPhoto(n));
      const mid = Math.floor(photo.length / 2);
      return void res.writeHead(200, { 'Content-Type': 'image/jpeg' }).end(Buffer.concat([photo.subarray(0, mid), photo.subarray(mid + 700)]));
    }
    if (kind === 'huge') {
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      res.write(Buffer.from([0xff, 0xd8, 0xff, 0xe0]));
      return void res.end(Buffer.alloc(3 * 1024 * 1024, 0x11));
    }
    if (kind === 'slow') {
      // One byte a second, for as long as the client stays.
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      res.write(Buffer.from([0xff]));
      const t = setInterval(() => res.write(Buffer.from([0xd8])), 1000);
      timers.add(t);
      res.on('close', () => (clearInterval(t), timers.delete(t)));
      return;
    }
    res.writeHead(404).end();
  };
  const server = http.createServer((req, res) => void handle(req, res));
  // A reserved port, as the second listener below binds the same one again on 127.0.0.2: one the kernel picked
  // for 127.0.0.1 it may also hand to another listener on 0 at 127.0.0.2 meanwhile.
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  // The slow URLs come from a host of their own (another loopback address), as a slow feed would:
  // the per-host limits keep it from holding up the others.
  const slowServer = http.createServer((req, res) => server.emit('request', req, res));
  await new Promise<void>((resolve) => slowServer.listen(port, '127.0.0.2', () => resolve()));
  return {
    base: `http://127.0.0.1:${port}`,
    slowBase: `http://127.0.0.2:${port}`,
    requests: () => requests,
    close: () =>
      new Promise((resolve) => {
        for (const t of timers) clearInterval(t);
        server.closeAllConnections();
        slowServer.closeAllConnections();
        slowServer.close(() => server.close(() => resolve()));
      }),
  };
}
