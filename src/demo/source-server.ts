import http from 'node:http';
import { demoPhoto } from './demo-photos.ts';

/** The bad URLs the demo queues, and the failure class each should end with. */
export const BAD_PATHS: Record<string, string> = {
  '/bad/missing.jpg': 'http_404',
  '/bad/error-page.jpg': 'not_image',
  '/bad/truncated.jpg': 'truncated',
  '/bad/gone.jpg': 'http_410',
};

/**
 * A photo server on 127.0.0.1 standing in for the listing feeds: generated
 * photos at /photos/<n>.jpg, and a few of the ways real feeds go wrong.
 */
export async function startSourceServer(): Promise<{ base: string; close: () => Promise<void> }> {
  const cache = new Map<number, { body: Buffer; type: string }>();
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    const photo = /^\/photos\/(\d+)\.jpg$/.exec(url);
    if (photo) {
      const n = Number(photo[1]);
      const p = cache.get(n) ?? (await demoPhoto(n));
      cache.set(n, p);
      res.writeHead(200, { 'Content-Type': p.type, 'Content-Length': p.body.length }).end(p.body);
      return;
    }
    if (url === '/bad/missing.jpg') return void res.writeHead(404).end('not found');
    if (url === '/bad/gone.jpg') return void res.writeHead(410).end('gone');
    if (url === '/bad/error-page.jpg')
      return void res.writeHead(200, { 'Content-Type': 'image/jpeg' }).end('<!DOCTYPE html><html><body>Sorry, this listing was removed</body></html>');
    if (url === '/bad/truncated.jpg') {
      // A transfer cut short: the full length announced, half sent, the connection dropped.
      const p = await demoPhoto(1);
      res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': p.body.length });
      return void res.write(p.body.subarray(0, Math.floor(p.body.length / 2)), () => res.socket?.destroy());
    }
    res.writeHead(404).end();
  };
  const server = http.createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  return {
    base: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
