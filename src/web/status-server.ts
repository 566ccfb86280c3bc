import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import { lookupImage } from './lookup-image.ts';
import { overview } from './overview.ts';

const PAGE = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'status-page.html'));

/** Only thumbnail paths as the store lays them out: nothing else on the disk can be asked for. */
const THUMBNAIL_PATH = /^[a-z]{2,3}\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{32}_[A-Za-z0-9_-]+\.(jpg|webp|avif)$/;
const TYPES: Record<string, string> = { jpg: 'image/jpeg', webp: 'image/webp', avif: 'image/avif' };

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' }).end(JSON.stringify(body));
}

/**
 * The status page: reads, never writes. `/` the page, `/api/overview` its
 * figures, `/api/lookup?q=URL-or-hash` one image, `/thumbs/<path>` thumbnails
 * from this host's store. Only GET.
 */
export function createStatusServer(db: Db, config: LisConfig): http.Server {
  return http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://status');
    try {
      if (req.method !== 'GET') return json(res, 405, { error: 'read-only: GET only' });
      if (url.pathname === '/') return void res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
      if (url.pathname === '/api/overview') return json(res, 200, await overview(db, config));
      if (url.pathname === '/api/lookup') {
        const q = url.searchParams.get('q') ?? '';
        if (!q.trim() || q.length > config.enqueue.maxUrlLength) return json(res, 400, { error: 'give an image URL or hash' });
        return json(res, 200, await lookupImage(db, q));
      }
      if (url.pathname.startsWith('/thumbs/')) {
        const rel = decodeURIComponent(url.pathname.slice('/thumbs/'.length));
        if (!THUMBNAIL_PATH.test(rel)) return json(res, 404, { error: 'no such thumbnail' });
        const file = path.join(config.stores.thumbnails, rel);
        if (!fs.existsSync(file)) return json(res, 404, { error: 'not in this host\'s store' });
        res.writeHead(200, { 'Content-Type': TYPES[rel.slice(rel.lastIndexOf('.') + 1)] });
        fs.createReadStream(file).pipe(res);
        return;
      }
      json(res, 404, { error: 'not found' });
    } catch (error) {
      json(res, 500, { error: errorMessage(error) });
    }
  });
}
