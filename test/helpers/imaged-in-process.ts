import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { sql } from 'kysely';
import type { LisConfig } from '../../src/config/config-schema.ts';
import { createDb, type Db } from '../../src/db/connect.ts';
import { createDownloadClient } from '../../src/download/download-client.ts';
import { SchemeFetcher } from '../../src/download/fetch-by-scheme.ts';
import { createImagedServer } from '../../src/imaged/imaged-server.ts';
import { ThumbnailService } from '../../src/imaged/thumbnail-service.ts';
import { closeLogger, createLogger } from '../../src/log/create-logger.ts';
import { originalPath, thumbnailRelativePath, thumbnailStorePath } from '../../src/store/store-layout.ts';
import { createThumbnailWorker } from '../../src/thumbnail/thumbnail-worker.ts';
import { STORE_MARKER } from '../../src/daemon/store-check.ts';

/** lis_imaged's server and service in this process, on a loopback port: real HTTP, real database, real sharp. */
export async function startImagedInProcess(
  config: LisConfig,
  db: Db,
  url: string,
): Promise<{ url: string; service: ThumbnailService; http: http.Server; close: () => Promise<void> }> {
  const log = createLogger({ component: 'imaged', log: config.log, screen: false });
  const client = createDownloadClient(config.download);
  const fetcher = new SchemeFetcher(client, config);
  const locks = createDb(url, config.imaged.maxGenerations);
  const service = new ThumbnailService({
    config,
    db,
    locks,
    log,
    workerId: `testhost:imaged-${process.pid}`,
    fetcher,
    thumbnailer: createThumbnailWorker({ config, db }),
  });
  const server = createImagedServer(config, service, log);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let closing: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    service,
    http: server,
    // Once, however often it is called (a test may close it itself, and afterEach again).
    close: () =>
      (closing ??= (async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        await service.close();
        fetcher.destroy();
        client.destroy();
        await locks.destroy();
        await closeLogger(log);
      })()),
  };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request with the path sent exactly as given (no normalisation of `..` or escapes). */
export function rawGet(base: string, rawPath: string, options: { method?: string; headers?: http.OutgoingHttpHeaders } = {}): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path: rawPath, method: options.method ?? 'GET', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/**
 * Bytes written as they are on one connection (several requests, an HTTP/1.0 one, a CONNECT line), and all that
 * comes back until the server ends the connection (so the last request should ask it to: `Connection: close`, or
 * HTTP/1.0 without keep-alive); rejects when it has not within `deadlineMs`.
 */
export function rawExchange(base: string, text: string, deadlineMs = 5000): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => socket.write(text, 'latin1'));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server did not end the connection within ${deadlineMs} ms; got ${JSON.stringify(Buffer.concat(chunks).toString('latin1'))}`));
    }, deadlineMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}

/**
 * A live row as the daemons leave it, whose original is in the store and whose
 * image_data lists only `presets` (so any other configured preset is "new").
 * Returns its hash and the frontend path of a preset.
 */
export async function insertLiveRow(
  db: Db,
  config: LisConfig,
  url: string,
  original: Buffer | null,
  presets: string[] = [],
): Promise<{ id: string; hash: string; pathOf: (preset: string, ext?: string) => string }> {
  const { rows } = await sql<{ id: string; image_hash: string }>`
    INSERT INTO live_images (country, datasource_id, image_url, stage, state, store_host)
    VALUES ('uk', 1, ${url}, 'live', 'done', ${config.host}) RETURNING id, image_hash`.execute(db);
  const { id, image_hash: hash } = rows[0];
  const pathOf = (preset: string, ext = 'jpg') => `/${thumbnailRelativePath('uk', hash, preset, ext)}`;
  // The stores as lis_thumbnaild and lis_downloadd leave them: marked at their first check. Empty and unmarked while
  // live rows of this host have files there, a store is a disk not mounted, which lis_imaged does not write either.
  for (const store of [config.stores.thumbnails, config.stores.originals]) {
    fs.mkdirSync(store, { recursive: true });
    fs.writeFileSync(path.join(store, STORE_MARKER), 'marked\n');
  }
  if (original) {
    const file = originalPath(config, 'uk', hash);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, original);
  }
  const imageData = {
    original: { width: 1800, height: 1200, format: 'jpeg', bytes: original?.length ?? 0 },
    contentHash: 'x',
    presets: Object.fromEntries(presets.map((p) => [p, { width: 1, height: 1, bytes: 1, path: pathOf(p).slice(1) }])),
  };
  await db
    .updateTable('live_images')
    .set({ image_data: JSON.stringify(imageData), live_data: JSON.stringify(imageData) })
    .where('id', '=', id)
    .execute();
  // The listed presets' files, as the thumbnailer left them in the store (the pusher checks they are there).
  for (const p of presets) {
    const file = thumbnailStorePath(config, pathOf(p).slice(1));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `stand-in for ${p}`);
  }
  return { id, hash, pathOf };
}

/** A frontend `fe1` (a local folder under `dir`) that has the row's files as they were (digest 'old'): pushed once. */
export async function pushedToFrontend(db: Db, dir: string, hash: string): Promise<void> {
  await db
    .insertInto('frontends')
    .values({ name: 'fe1', target: path.join(dir, 'fe1') })
    .execute();
  await db.insertInto('frontend_pushes').values({ frontend: 'fe1', country: 'uk', image_hash: hash, pushed_at: new Date(), files_digest: 'old' }).execute();
}

/** A row as the ETL leaves it: stage download, waiting. */
export async function insertQueuedRow(db: Db, url: string): Promise<{ id: string; hash: string; pathOf: (preset: string, ext?: string) => string }> {
  await sql`INSERT INTO datasources (country, datasource_id) VALUES ('uk', 1) ON CONFLICT DO NOTHING`.execute(db);
  const { rows } = await sql<{ id: string; image_hash: string }>`
    INSERT INTO live_images (country, datasource_id, image_url) VALUES ('uk', 1, ${url}) RETURNING id, image_hash`.execute(db);
  const { id, image_hash: hash } = rows[0];
  return { id, hash, pathOf: (preset: string, ext = 'jpg') => `/${thumbnailRelativePath('uk', hash, preset, ext)}` };
}
