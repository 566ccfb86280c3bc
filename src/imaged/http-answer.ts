import type http from 'node:http';

/** A thumbnail's bytes as sent, with the file's modification time. */
export interface Picture {
  bytes: Buffer;
  mtime: Date;
  ext: string;
}

export const CONTENT_TYPES: Record<string, string> = { jpg: 'image/jpeg', webp: 'image/webp', avif: 'image/avif', png: 'image/png', gif: 'image/gif' };

/** nginx's own ETag form (`"<mtime hex>-<size hex>"`), so the frontend's static answer and ours validate alike. Pure. */
export function etagOf(picture: Pick<Picture, 'bytes' | 'mtime'>): string {
  return `"${Math.floor(picture.mtime.getTime() / 1000).toString(16)}-${picture.bytes.length.toString(16)}"`;
}

/** Whether the request's validators match: If-None-Match wins over If-Modified-Since (RFC 9110). Pure. */
export function notModified(headers: http.IncomingHttpHeaders, etag: string, mtime: Date): boolean {
  const inm = headers['if-none-match'];
  if (inm !== undefined) return inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag || t.trim() === '*');
  const ims = headers['if-modified-since'];
  if (ims === undefined) return false;
  // Only an HTTP-date counts (RFC 9110 says to ignore anything else): Date.parse alone takes `2099` or `1 Jan 3000`
  // as dates, and would answer 304 for a file the client never had.
  const value = ims.trim();
  if (!HTTP_DATE.test(value)) return false;
  // asctime carries no zone, and Date.parse would read it as local time: it is GMT.
  const since = Date.parse(value.endsWith(' GMT') ? value : `${value} GMT`);
  return !Number.isNaN(since) && writtenAsParsed(value, new Date(since)) && Math.floor(mtime.getTime() / 1000) * 1000 <= since;
}

/**
 * Whether the date written is the date parsed: Date.parse rolls `31 Feb` over to 3 March and `24:00:00` to the next
 * day, and drops a 60th second, where nginx's parser refuses them; such a date (in 2099, say) answered 304 for a
 * file the client never had. Pure.
 */
function writtenAsParsed(value: string, parsed: Date): boolean {
  // The day comes before the month (`06 Nov`, `06-Nov`), or after it in asctime (`Nov  6 08:49:37`).
  const day = /(\d{2})[ -][A-Z]/.exec(value)?.[1] ?? /[a-z] +(\d{1,2}) \d/.exec(value)?.[1];
  const time = /\d{2}:\d{2}:\d{2}/.exec(value)?.[0];
  return Number(day) === parsed.getUTCDate() && time === parsed.toISOString().slice(11, 19);
}

/** RFC 9110's three forms: IMF-fixdate, obsolete RFC 850, asctime. */
const HTTP_DATE =
  /^(?:[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT|[A-Z][a-z]{5,8}, \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4})$/;

/** 200 (or 304, or headers only for HEAD) with the validators and caching a thumbnail gets. */
export function sendPicture(req: http.IncomingMessage, res: http.ServerResponse, picture: Picture, cacheControl: string, source: string): void {
  const etag = etagOf(picture);
  const headers: http.OutgoingHttpHeaders = {
    ETag: etag,
    'Last-Modified': picture.mtime.toUTCString(),
    'Cache-Control': cacheControl,
    'X-Imaged': source,
  };
  if (notModified(req.headers, etag, picture.mtime)) return void res.writeHead(304, headers).end();
  headers['Content-Type'] = CONTENT_TYPES[picture.ext] ?? 'application/octet-stream';
  headers['Content-Length'] = picture.bytes.length;
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : picture.bytes);
}

/** A short text answer: errors, refusals, 503 with Retry-After. */
export function sendText(res: http.ServerResponse, status: number, text: string, extra: http.OutgoingHttpHeaders = {}): void {
  if (res.headersSent) return void res.destroy();
  const body = `${text}\n`;
  // Its length said, as a picture's is: without it a GET went chunked and its HEAD had neither header (the two
  // answers' headers differed), and an HTTP/1.0 client's kept-alive connection was closed after every refusal.
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body), ...extra });
  res.end(body);
}
