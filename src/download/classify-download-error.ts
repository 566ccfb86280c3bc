import http from 'node:http';
import { DownloadError } from './download-error.ts';

/** What a failed download records on its row (RowFailure without id and attempts). Pure. */
export interface DownloadFailure {
  reason: string;
  errorClass: string;
  retryable: boolean;
  retryAfterSeconds?: number;
  /** A store_write_failed's errno (ENOSPC, EROFS, ENOTDIR...): whether the whole store is at fault (storeWriteFault). */
  storeCode?: string;
}

/**
 * `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` -> seconds
 * from `now`; undefined when absent or nonsense. Capped at a day so that a
 * server cannot park a row for ever. A date is on the server's clock, so it is counted from the response's own
 * `Date` (`serverDate`) when that is one: read against ours, a source whose clock was 10 minutes behind asked for
 * a wait 8 minutes past, no pause was kept, and each of its queued rows was asked and charged a 429.
 */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now(), serverDate?: string | string[]): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  const trimmed = text.trim();
  let secondsFromNow: number;
  if (/^\d+$/.test(trimmed)) secondsFromNow = Number(trimmed);
  else {
    const at = parseHttpDate(trimmed);
    if (Number.isNaN(at)) return undefined;
    const its = parseHttpDate(String((Array.isArray(serverDate) ? serverDate[0] : serverDate) ?? '').trim());
    secondsFromNow = Math.ceil((at - (Number.isNaN(its) ? now : its)) / 1000);
  }
  return secondsFromNow > 0 ? Math.min(secondsFromNow, 86_400) : undefined;
}

/** RFC 9110's asctime form, which carries no zone. */
const ASCTIME = /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * An HTTP date as epoch ms (NaN when none). Its asctime form is GMT, where Date.parse reads a date without a zone as
 * this host's local time: in Asia/Kolkata a Retry-After 2 minutes on was read as 5 h 28 min past, and no pause kept.
 */
function parseHttpDate(text: string): number {
  return Date.parse(ASCTIME.test(text) ? `${text} GMT` : text);
}

/**
 * A response status that is not an image to keep, as a failure:
 * 404/410 are permanent, 429/5xx and 408 retried (honouring Retry-After),
 * any other 4xx permanent, anything else unexpected.
 */
export function statusFailure(status: number, statusMessage: string | undefined, retryAfter?: string | string[], date?: string | string[]): DownloadError {
  const reason = `HTTP ${status}${statusMessage ? ` ${statusMessage}` : ''}`;
  const after = parseRetryAfter(retryAfter, Date.now(), date);
  if (status === 404 || status === 410) return new DownloadError(`http_${status}`, reason, { retryable: false });
  if (status === 429) return new DownloadError('http_429', reason, { retryable: true, retryAfterSeconds: after });
  if (status >= 500 && status <= 599) return new DownloadError('http_5xx', reason, { retryable: true, retryAfterSeconds: after });
  if (status === 408) return new DownloadError('http_4xx', reason, { retryable: true, retryAfterSeconds: after });
  if (status >= 400 && status <= 499) return new DownloadError('http_4xx', reason, { retryable: false });
  // A 304 is an answer to validators; one we did not ask for (none were sent) is no redirect at all.
  if (status === 304) return new DownloadError('http_status', `${reason}: not a status an image comes with (no validators were sent)`, { retryable: false });
  if (status >= 300 && status <= 399) return new DownloadError('bad_redirect', `${reason} without a usable Location`, { retryable: false });
  return new DownloadError('http_status', `${reason}: not a status an image comes with`, { retryable: false });
}

/** got's phase names for its timeouts, in words. */
const TIMEOUT_PHASES: Record<string, string> = {
  lookup: 'DNS lookup',
  connect: 'connecting',
  secureConnect: 'TLS handshake',
  socket: 'the server going quiet (socket idle)',
  send: 'sending the request',
  response: 'waiting for the first byte',
  request: 'the whole download',
};

const CONNECTION_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'HPE_INVALID_CONSTANT',
  'HPE_INVALID_CHUNK_SIZE',
  'HPE_INVALID_HEADER_TOKEN',
  'HPE_INVALID_STATUS',
  'HPE_INVALID_VERSION',
  'HPE_UNEXPECTED_CONTENT_LENGTH',
  'HPE_INVALID_CONTENT_LENGTH',
  'HPE_INVALID_TRANSFER_ENCODING',
  'HPE_CR_EXPECTED',
  'HPE_LF_EXPECTED',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NODATA', 'EAI_NONAME', 'ENODATA']);

const DECODE_CODES = new Set(['Z_DATA_ERROR', 'ERR_BROTLI_DECOMPRESSION_FAILED', 'ERR__ERROR_FORMAT_PADDING_1']);

/**
 * zlib's "unexpected end of file" (gzip, deflate and brotli alike): the compressed stream stopped before
 * its own end marker. The data decoded well up to there, so the transfer was cut: the only sign of it
 * when the body ends with the connection (no Content-Length, no chunks), or when a proxy's chunked
 * response ended cleanly after its upstream broke off.
 */
const COMPRESSED_CUT = 'Z_BUF_ERROR';

interface ErrorLike {
  message?: string;
  code?: string;
  syscall?: string;
  event?: string;
  cause?: unknown;
}

/** The error and its causes, outermost first (got wraps what hooks and sockets throw). */
function chain(error: unknown): ErrorLike[] {
  const out: ErrorLike[] = [];
  let current: unknown = error;
  while (current && typeof current === 'object' && out.length < 10) {
    out.push(current);
    current = (current as ErrorLike).cause;
  }
  return out;
}

/** A file system error (it names a path) in the chain: our store failed, whatever its code (ENOSPC, EROFS, or ENOENT from a recursive mkdir on a full disk). */
export function storeErrorOf(error: unknown): { code: string; message: string } | null {
  for (
    let e = error as { code?: unknown; path?: unknown; syscall?: unknown; message?: string; cause?: unknown } | undefined, depth = 0;
    e && depth < 5;
    e = e.cause as typeof e, depth++
  ) {
    if (typeof e.path === 'string' && typeof e.syscall === 'string' && typeof e.code === 'string') return { code: e.code, message: e.message ?? '' };
  }
  return null;
}

/** A store error in words, its code once (Node's messages start with it: `EROFS: read-only file system, mkdir ...`). */
export function storeWords(store: { code: string; message: string }): string {
  return store.message.startsWith(`${store.code}:`) ? store.message : `${store.code}: ${store.message}`;
}

/** Our store failing to take the original: the runner pauses on it, or the worker narrows it to the row (storeWriteFault). */
export function storeWriteFailure(store: { code: string; message: string }): DownloadFailure {
  return { reason: `cannot write the original: ${storeWords(store)}`, errorClass: 'store_write_failed', retryable: true, storeCode: store.code };
}

/**
 * Any error a download can end in -> what to record. Our own DownloadErrors
 * (wherever got wrapped them) keep their class; got's and the socket's are
 * told apart by code. `afterHeaders`: the response had begun, so a reset is a
 * body cut short (`truncated`) rather than a failed connection. Whatever is
 * left is `internal`, retryable, with the message, so nothing is lost.
 */
export function classifyDownloadError(error: unknown, afterHeaders = false): DownloadFailure {
  const errors = chain(error);
  const ours = errors.find((e): e is DownloadError => e instanceof DownloadError);
  if (ours) return { reason: ours.message, errorClass: ours.errorClass, retryable: ours.retryable, retryAfterSeconds: ours.retryAfterSeconds };
  const store = storeErrorOf(error);
  // Our disk, not the URL: the runner gives the row back uncharged and pauses until the store is writable.
  if (store) return storeWriteFailure(store);

  const codes = errors.map((e) => e.code).filter((c): c is string => typeof c === 'string');
  const message = errors[0]?.message ?? String(error);
  const has = (set: Set<string>) => codes.some((c) => set.has(c));
  const timeout = errors.find((e) => e.code === 'ETIMEDOUT' && typeof e.event === 'string');

  if (timeout) return { reason: `timeout: ${TIMEOUT_PHASES[timeout.event!] ?? timeout.event} took too long`, errorClass: 'timeout', retryable: true };
  if (codes.includes('ETIMEDOUT')) return { reason: `timeout: ${message}`, errorClass: 'timeout', retryable: true };
  if (codes.includes('ERR_TOO_MANY_REDIRECTS')) return { reason: message, errorClass: 'redirect_loop', retryable: false };
  if (codes.some((c) => c === 'ERR_UNSUPPORTED_PROTOCOL' || c === 'ERR_INVALID_URL'))
    return { reason: `bad URL: ${message}`, errorClass: 'bad_url', retryable: false };
  if (codes.includes('ERR_HTTP_CONTENT_LENGTH_MISMATCH')) return { reason: `truncated: ${message}`, errorClass: 'truncated', retryable: true };
  if (codes.includes(COMPRESSED_CUT)) {
    return { reason: `truncated: the compressed body stops before its end (${message})`, errorClass: 'truncated', retryable: true };
  }
  if (has(DECODE_CODES)) return { reason: `bad content encoding: ${message}`, errorClass: 'bad_encoding', retryable: false };
  // getaddrinfo refuses to look the name up at all (longer than 255 characters): the URL's fault, the same
  // on every try. Left alone it fell through to `internal` and was given back, uncharged, for ever.
  if (errors.some((e) => e.code === 'EINVAL' && e.syscall === 'getaddrinfo')) {
    return { reason: `bad URL: the host name cannot be looked up (${message.slice(0, 120)})`, errorClass: 'bad_url', retryable: false };
  }
  if (has(DNS_CODES)) return { reason: `DNS: ${message}`, errorClass: 'dns', retryable: true };
  if (codes.some((c) => c.startsWith('ERR_TLS') || c.startsWith('ERR_SSL') || /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(c))) {
    return { reason: `TLS: ${message}`, errorClass: 'tls', retryable: false };
  }
  // OpenSSL failing the handshake on what the server sent (`write EPROTO ...:SSL routines:...:wrong version
  // number:...`): most often an https URL whose port speaks plain HTTP. The URL's or the server's doing, the same on
  // every try; left alone it fell through to `internal` and was given back, uncharged, every minute for ever.
  if (codes.includes('EPROTO')) return { reason: `TLS: ${tlsWords(message)}`, errorClass: 'tls', retryable: false };
  if (/^Bad response: \d+$/.test(message) || /Proxy timeout/.test(message)) return { reason: `proxy: ${message}`, errorClass: 'proxy', retryable: true };
  // More header bytes than Node's parser reads: what the server sends, not the network, and the same on every try.
  if (codes.includes('HPE_HEADER_OVERFLOW'))
    return {
      reason: `response headers too large: over Node's limit of ${http.maxHeaderSize} bytes (${message})`,
      errorClass: 'headers_too_large',
      retryable: false,
    };
  if (has(CONNECTION_CODES) || (codes.includes('ERR_GOT_REQUEST_ERROR') && /socket hang up|aborted/i.test(message))) {
    return afterHeaders
      ? { reason: `truncated: the connection ended mid-body (${message})`, errorClass: 'truncated', retryable: true }
      : { reason: `connection: ${message}`, errorClass: 'connection', retryable: true };
  }
  return { reason: `internal: ${message}`, errorClass: 'internal', retryable: true };
}

/**
 * OpenSSL's reason out of Node's EPROTO message (`write EPROTO 80CC...:error:0A00010B:SSL routines:ssl3_get_record:wrong
 * version number:../deps/openssl/...:350:\n`): the words, without its addresses and source paths. Pure.
 */
export function tlsWords(message: string): string {
  const reason = /SSL routines:[^:]*:([^:]+):/.exec(message)?.[1]?.trim();
  if (!reason) return message.trim().slice(0, 200);
  return reason === 'wrong version number' ? `${reason} (does the server speak TLS on this port?)` : reason;
}

/** What had arrived of a body when its transfer failed. */
export interface TransferSoFar {
  /** Content-Length, when there is one and the body is not encoded (decoded bytes cannot be held against it). */
  declared: number | null;
  chunked: boolean;
  /** Body bytes received. */
  received: number;
}

/**
 * A failure after the response began, told by the transfer: `truncated`
 * (retried) only when it was cut: fewer bytes than Content-Length, a chunked
 * body without its end, a connection lost mid-body. A server that sent more
 * than its Content-Length broke HTTP: that is said as it is, not retried.
 */
export function classifyTransferError(error: unknown, transfer: TransferSoFar): DownloadFailure {
  const failure = classifyDownloadError(error, true);
  // A cut compressed stream says so itself; the framing below counts wire bytes, which it does not judge.
  if (failure.errorClass !== 'truncated' || chain(error).some((e) => e.code === COMPRESSED_CUT)) return failure;
  const message = chain(error)[0]?.message ?? String(error);
  // With Content-Length framing the parser never reads body bytes: a parse error after the headers
  // can only come from bytes after the announced body (however many of the body we had consumed yet).
  const parseError = chain(error).some((e) => typeof e.code === 'string' && e.code.startsWith('HPE_'));
  if (transfer.declared !== null) {
    if (!parseError && transfer.received < transfer.declared) {
      return {
        reason: `truncated: the transfer was cut: ${transfer.received} of the ${transfer.declared} bytes the Content-Length announced came (${message})`,
        errorClass: 'truncated',
        retryable: true,
      };
    }
    return {
      reason: `the server sent more bytes than its Content-Length (${transfer.declared}): the response is malformed (${message})`,
      errorClass: 'overlong_body',
      retryable: false,
    };
  }
  if (transfer.chunked) {
    return {
      reason: `truncated: the transfer was cut: the chunked body ended without its last chunk, after ${transfer.received} bytes (${message})`,
      errorClass: 'truncated',
      retryable: true,
    };
  }
  return failure;
}
