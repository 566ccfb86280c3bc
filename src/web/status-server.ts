import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { runtimePath } from '../util/package-root.ts';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { connectionFailure } from '../db/connection-failure.ts';
import { errorMessage } from '../errors.ts';
import { codePointLength } from '../util/code-points.ts';
import { createSmallServer } from '../util/small-server.ts';
import { hostHeaderCheck } from './host-check.ts';
import { lookupImage } from './lookup-image.ts';
import { overviewReader } from './overview.ts';

const PAGE = fs.readFileSync(runtimePath('src', 'web', 'status-page.html'));

/** Only thumbnail paths as the store lays them out: nothing else on the disk can be asked for. */
const THUMBNAIL_PATH = /^[a-z]{2,3}\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{32}_[A-Za-z0-9_-]+\.(jpg|webp|avif)$/;
const TYPES: Record<string, string> = { jpg: 'image/jpeg', webp: 'image/webp', avif: 'image/avif' };

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', ...headers }).end(JSON.stringify(body));
}

/** `/thumbs/<path>` with its escapes undone; null when the escapes are broken. */
function thumbnailPath(pathname: string): string | null {
  try {
    return decodeURIComponent(pathname.slice('/thumbs/'.length));
  } catch {
    return null;
  }
}

async function handle(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  db: Db,
  config: LisConfig,
  hostAllowed: (host: string | undefined) => boolean,
  overview: () => Promise<unknown>,
): Promise<void> {
  // DNS rebinding: a page of another site whose name now points here must not read us.
  if (!hostAllowed(req.headers.host))
    return json(res, 421, { error: `this server does not answer for host ${JSON.stringify(req.headers.host ?? '')}; add it to metrics.webHostNames` });
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://status');
  } catch {
    return json(res, 400, { error: 'bad request target' });
  }
  // HEAD is a GET without the body (node leaves it out): a monitor's `curl -I` must not read as the page broken.
  // Any other method is refused, saying which are taken (Allow, as HTTP asks of a 405).
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'read-only: GET and HEAD only' }, { Allow: 'GET, HEAD' });
  if (url.pathname === '/') return void res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
  if (url.pathname === '/api/overview') return json(res, 200, await overview());
  if (url.pathname === '/api/lookup') {
    const q = url.searchParams.get('q') ?? '';
    if (!q.trim()) return json(res, 400, { error: 'give an image URL or hash' });
    // Said as what it is: the operator did give a URL, one no row can have (enqueue refuses it).
    if (codePointLength(q) > config.enqueue.maxUrlLength)
      return json(res, 400, { error: `longer than enqueue.maxUrlLength (${config.enqueue.maxUrlLength} characters): no queued URL is that long` });
    return json(res, 200, await lookupImage(db, q));
  }
  if (url.pathname.startsWith('/thumbs/')) {
    const rel = thumbnailPath(url.pathname);
    if (rel === null || !THUMBNAIL_PATH.test(rel)) return json(res, 404, { error: 'no such thumbnail' });
    const file = path.join(config.stores.thumbnails, rel);
    if (!fs.existsSync(file)) return json(res, 404, { error: "not in this host's store" });
    res.writeHead(200, { 'Content-Type': TYPES[rel.slice(rel.lastIndexOf('.') + 1)] });
    fs.createReadStream(file)
      .on('error', () => res.destroy())
      .pipe(res);
    return;
  }
  json(res, 404, { error: 'not found' });
}

/**
 * The status page: reads, never writes. `/` the page, `/api/overview` its
 * figures, `/api/lookup?q=URL-or-hash` one image, `/thumbs/<path>` thumbnails
 * from this host's store. Only GET (and HEAD), only for the host names of
 * hostHeaderCheck (others get 421). No request, however malformed, can stop
 * it: each one's failure is answered (or its socket closed) and forgotten.
 */
export function createStatusServer(db: Db, config: LisConfig, bindHost = config.metrics.host): http.Server {
  const hostAllowed = hostHeaderCheck([config.host, bindHost, ...config.metrics.webHostNames]);
  const overview = overviewReader(db, config);
  // A browser opens up to 6 sockets: 64 serve a few operators at once, and bound what anyone else can hold.
  const server = createSmallServer(64, (req, res) => {
    void handle(req, res, db, config, hostAllowed, overview).catch((error: unknown) => {
      // The database away is not our bug: 503, and the page says so (never with the URL's password).
      const away = connectionFailure(config.database.url ?? 'the embedded server', error);
      if (!res.headersSent) json(res, away ? 503 : 500, away ? { error: away.message, code: away.code } : { error: errorMessage(error) });
      else res.destroy();
    });
  });
  // A request line or header the parser refuses: answer 400 and close, rather than let it surface as an error.
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });
  return server;
}
