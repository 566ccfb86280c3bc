import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import client from 'prom-client';
import type { LisConfig } from '../config/config-schema.ts';
import { connectionFailure } from '../db/connection-failure.ts';
import { errorMessage, stackOf } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import { BusyError, RequestGoneError } from './generation-gate.ts';
import { CONTENT_TYPES, sendPicture, sendText } from './http-answer.ts';
import { NotMadeError } from './make-preset.ts';
import { parseRequestPath } from './request-path.ts';
import type { Answer, ThumbnailService } from './thumbnail-service.ts';

class TimedOut extends Error {}

/**
 * lis_imaged's HTTP face: GET and HEAD of a frontend thumbnail path or an
 * origin path, `/healthz`, and `/metrics` (Prometheus). Every answer is one
 * of 200/304 (the picture), 400 (a path we never serve), 404 (no such image
 * or preset; the placeholder, when configured, for an image we cannot give), 503 + Retry-After (busy, or
 * not made in time, or the database away), 502 (the source failed), 500 (a bug; logged).
 */
export function createImagedServer(config: LisConfig, service: ThumbnailService, log: Logger): http.Server {
  const { imaged } = config;
  const origins = new Set(Object.keys(imaged.origins));
  const placeholder = imaged.placeholder
    ? {
        bytes: readFileSync(imaged.placeholder),
        // By its extension in any case (`NO-PHOTO.JPG`, `.jpeg`): a placeholder sent as octet-stream is a download, not a picture.
        type: CONTENT_TYPES[path.extname(imaged.placeholder).slice(1).toLowerCase().replace('jpeg', 'jpg')] ?? 'application/octet-stream',
      }
    : null;
  const registry = new client.Registry();
  registry.setDefaultLabels({ component: 'imaged' });
  const answers = new client.Counter({
    name: 'lis_imaged_requests_total',
    help: 'Requests by status and source',
    labelNames: ['status', 'source'],
    registers: [registry],
  });
  const seconds = new client.Histogram({
    name: 'lis_imaged_request_seconds',
    help: 'Time to answer, by source',
    labelNames: ['source'],
    buckets: [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  new client.Gauge({
    name: 'lis_imaged_generations_running',
    help: 'Generations in flight',
    registers: [registry],
    collect() {
      this.set(service.gate.stats.running);
    },
  });
  new client.Gauge({
    name: 'lis_imaged_requests_waiting',
    help: 'Requests waiting for a generation',
    registers: [registry],
    collect() {
      this.set(service.gate.stats.waiting);
    },
  });
  const retryAfter = { 'Retry-After': String(imaged.retryAfterSeconds) };
  const databaseName = config.database.url ?? 'the embedded server';

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const started = process.hrtime.bigint();
    const done = (status: number, source: string) => {
      answers.inc({ status: String(status), source });
      seconds.observe({ source }, Number(process.hrtime.bigint() - started) / 1e9);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      // Counted like every other refusal: a burst of POSTs shows on the dashboard too.
      done(405, 'refused');
      return sendText(res, 405, 'GET or HEAD only', { Allow: 'GET, HEAD' });
    }
    const rawPath = req.url ?? '/';
    // The query is ignored here as on thumbnail paths (a scraper's or a cache-buster's `?x` is the same page).
    const bare = rawPath.split('?')[0];
    if (bare === '/healthz') return sendText(res, 200, 'ok');
    if (bare === '/metrics') {
      const text = await registry.metrics();
      res.writeHead(200, { 'Content-Type': registry.contentType, 'Content-Length': Buffer.byteLength(text) });
      return void res.end(text);
    }
    const parsed = parseRequestPath(rawPath, config.thumbnail.presets, origins);
    if (parsed.kind === 'refused') {
      done(parsed.status, 'refused');
      log.debug(`${parsed.status} ${rawPath.slice(0, 300)}: ${parsed.reason}`, { scope: 'Imaged::request' });
      return sendText(res, parsed.status, parsed.reason);
    }
    // Aborted when the client hangs up before its answer, and once the request is answered (a 503 after
    // imaged.timeoutSeconds included): either way it stops waiting in the gate and frees its place there.
    const stop = new AbortController();
    res.on('close', () => stop.abort());
    let timer: NodeJS.Timeout | undefined;
    try {
      const work =
        parsed.kind === 'thumbnail'
          ? service.thumbnail({ country: parsed.country, hash: parsed.hash, preset: parsed.preset, ext: parsed.ext, version: parsed.version }, stop.signal)
          : service.originThumbnail(parsed.origin, parsed.preset, parsed.key, stop.signal);
      const answer = await Promise.race([
        work,
        new Promise<Answer>((_, reject) => (timer = setTimeout(() => reject(new TimedOut()), imaged.timeoutSeconds * 1000))),
      ]);
      sendPicture(req, res, answer.picture, imaged.cacheControl, answer.source);
      done(res.statusCode, answer.source);
    } catch (error) {
      if (error instanceof RequestGoneError) {
        // The client hung up while waiting (499, as nginx counts it): nobody to answer.
        done(499, 'gone');
        return void res.destroy();
      }
      if (error instanceof BusyError || error instanceof TimedOut) {
        done(503, 'busy');
        return sendText(res, 503, error instanceof TimedOut ? `not made within ${imaged.timeoutSeconds} s (imaged.timeoutSeconds)` : error.message, retryAfter);
      }
      if (error instanceof NotMadeError) {
        done(error.status, 'not_made');
        // Our own faults (a store full or unreadable) are for operators to see; the rest is the traffic's.
        if (error.options.ours) log.error(`${error.status} ${rawPath.slice(0, 300)}: ${error.message}`, { scope: 'Imaged::request' });
        else log.debug(`${error.status} ${rawPath.slice(0, 300)}: ${error.message}`, { scope: 'Imaged::request' });
        // The placeholder stands in for a picture we cannot give (no row, failed or parked, no such version, a key
        // the origin lacks, an original that cannot be thumbnailed). Not for a WebP/AVIF twin not made: a format is
        // missing, not a picture ("no photo" would be untrue where the JPEG is there), and a plain 404 shows that the
        // pages and thumbnail.twins disagree.
        if (error.status === 404 && placeholder && error.code !== 'ERR_IMAGED_NO_TWIN') {
          res.writeHead(404, { 'Content-Type': placeholder.type, 'Cache-Control': 'no-store', 'Content-Length': placeholder.bytes.length });
          return void res.end(placeholder.bytes);
        }
        const after = error.options.retryAfterSeconds;
        return sendText(res, error.status, error.message, error.status !== 503 ? {} : after ? { 'Retry-After': String(after) } : retryAfter);
      }
      // The database away (refused, reset mid-query): ours, passing, and not a bug. 503 so that nginx and the
      // browsers come back, rather than a 500 that reads as broken.
      const away = connectionFailure(databaseName, error);
      if (away) {
        done(503, 'database');
        log.error(`${rawPath.slice(0, 300)}: the database cannot be reached: ${errorMessage(away)}`, { scope: 'Imaged::request' });
        return sendText(res, 503, 'the database cannot be reached; try again shortly', retryAfter);
      }
      done(500, 'error');
      log.error(`${rawPath.slice(0, 300)}: ${errorMessage(error)}`, { scope: 'Imaged::request', ...stackOf(error) });
      sendText(res, 500, 'internal error (logged)');
    } finally {
      clearTimeout(timer);
      stop.abort();
    }
  };

  const inFlight = new Set<http.ServerResponse>();
  // Timeouts are checked this often (node's default, 30 s, let a client that never ends its headers hold its
  // connection ~30 s past headersTimeout; measured 29.4 s before the 408).
  const server = http.createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
    inFlight.add(res);
    res.on('close', () => inFlight.delete(res));
    // Past closeServer (a request that came on a kept-alive connection meanwhile): answered, then the connection closed.
    if (!server.listening) res.shouldKeepAlive = false;
    void handle(req, res).catch((error: unknown) => {
      log.error(`answering: ${errorMessage(error)}`, { scope: 'Imaged::request' });
      sendText(res, 500, 'internal error (logged)');
    });
  });
  answersInFlight.set(server, inFlight);
  // CONNECT never reaches the request handler: with no listener node drops the connection unanswered. Answered as
  // every other method we do not serve is (405, Allow), and the connection closed, since it cannot carry HTTP on.
  server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    answers.inc({ status: '405', source: 'refused' });
    const body = 'GET or HEAD only\n';
    socket.on('error', () => {});
    socket.end(
      'HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n' +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  server.requestTimeout = (imaged.timeoutSeconds + 10) * 1000;
  server.headersTimeout = 10_000;
  return server;
}

/** Each server's requests not yet answered: closeServer lets them finish on connections that then close. */
const answersInFlight = new WeakMap<http.Server, Set<http.ServerResponse>>();

/**
 * A stop: no new connections, idle ones closed now, and each answer still in hand sent with `Connection: close`, so
 * that its connection ends with it. Kept alive instead, each would hold the stop for the server's keepAliveTimeout
 * after its answer (5 s; measured 10 s from SIGTERM to exit with a 3 s generation in hand, against 3 s now).
 * Resolves once every connection is gone.
 */
export function closeServer(server: http.Server): Promise<void> {
  for (const res of answersInFlight.get(server) ?? []) if (!res.headersSent) res.shouldKeepAlive = false;
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
