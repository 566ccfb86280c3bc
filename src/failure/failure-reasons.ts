/**
 * Every failure class a stage can record, classified once, here: whose fault it
 * is and what retrying does. The README's failure table is this table.
 *
 * - `source`: the URL, its server or its file. Counts toward the row's attempts
 *   and its datasource's failure rate.
 * - `ours`: our disk, database, frontends, or a bug. Never charged to a row or a
 *   datasource: the row is given back unharmed and the stage (or, for a
 *   frontend, that frontend's pushes) waits until the fault is gone.
 *
 * `retry`:
 * - `backoff`: retried with the queue's backoff, permanent after
 *   `queue.maxAttempts` (source faults that may pass: a timeout, a 5xx);
 * - `never`: permanent for the row at once (a 404, not an image);
 * - `when_fixed`: our fault; retried, uncharged, once the fault is gone.
 */
export type FailureOwner = 'source' | 'ours';
export type RetryRule = 'backoff' | 'never' | 'when_fixed';

export interface FailureReason {
  owner: FailureOwner;
  retry: RetryRule;
  /** For the README and operators: what it means. */
  meaning: string;
}

export const FAILURE_REASONS = {
  // Download: the source's faults.
  http_404: { owner: 'source', retry: 'never', meaning: 'the server says the image does not exist' },
  http_410: { owner: 'source', retry: 'never', meaning: 'the server says the image is gone for good' },
  http_429: { owner: 'source', retry: 'backoff', meaning: 'the server asks us to slow down (Retry-After honoured)' },
  http_5xx: { owner: 'source', retry: 'backoff', meaning: 'the server failed' },
  http_4xx: { owner: 'source', retry: 'never', meaning: 'any other client error (408 is retried)' },
  http_status: { owner: 'source', retry: 'never', meaning: 'a status no image comes with' },
  bad_redirect: { owner: 'source', retry: 'never', meaning: 'a redirect without a usable Location' },
  redirect_loop: { owner: 'source', retry: 'never', meaning: 'too many redirects' },
  bad_url: { owner: 'source', retry: 'never', meaning: 'the URL cannot be fetched (scheme, syntax)' },
  refused_address: { owner: 'source', retry: 'never', meaning: 'the host resolves to an address we never fetch from (private, loopback, ...)' },
  dns: { owner: 'source', retry: 'backoff', meaning: 'the host name did not resolve' },
  connection: { owner: 'source', retry: 'backoff', meaning: 'the connection was refused or broke before the response' },
  tls: { owner: 'source', retry: 'never', meaning: 'the TLS handshake or certificate failed' },
  proxy: { owner: 'source', retry: 'backoff', meaning: 'the configured proxy refused or failed the request' },
  timeout: { owner: 'source', retry: 'backoff', meaning: 'the server was too slow (which phase is in the message)' },
  truncated: { owner: 'source', retry: 'backoff', meaning: 'the transfer was cut: fewer bytes than Content-Length, a reset, a chunked body without its end' },
  overlong_body: { owner: 'source', retry: 'never', meaning: 'the server sent more bytes than its Content-Length: a broken response, the same on every try' },
  headers_too_large: {
    owner: 'source',
    retry: 'never',
    meaning: "the response headers are larger than Node's limit (16 KiB): the server's doing, the same on every try",
  },
  bad_encoding: { owner: 'source', retry: 'never', meaning: 'the Content-Encoding could not be decoded' },
  too_large: { owner: 'source', retry: 'never', meaning: 'larger than download.maxBytes' },
  not_image: { owner: 'source', retry: 'never', meaning: 'the bytes are not an image (HTML, text, ...)' },
  // Thumbnail: the file's faults.
  corrupt_image: { owner: 'source', retry: 'never', meaning: 'the decoder cannot read the image (its words are in the message)' },
  unsupported_format: { owner: 'source', retry: 'never', meaning: 'an image format we do not thumbnail' },
  too_many_pixels: { owner: 'source', retry: 'never', meaning: 'more pixels than thumbnail.maxPixels' },
  processing_timeout: { owner: 'source', retry: 'backoff', meaning: 'decoding and resizing took longer than thumbnail.timeoutSeconds' },
  // Our own faults: never charged.
  store_write_failed: { owner: 'ours', retry: 'when_fixed', meaning: 'a store could not be written (full, read-only, permissions)' },
  store_paused: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning:
      'a store is below its free-space minimum or unwritable, or a store the stage reads has no folder for the country (not mounted?); the stage is paused',
  },
  store_path_failed: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning:
      "a file or folder inside a store could not be written though the store itself can be (a folder's owner or permissions, a file where a folder should be, an I/O error there); the stage goes on",
  },
  store_read_failed: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning: 'a file in a store could not be read for a reason other than its absence (permissions, an I/O error, too many open files)',
  },
  original_missing: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning:
      'the downloaded original is not in the store (lost, or another host), or not as downloaded (cut short or changed there: its bytes or SHA-256 differ from what lis_downloadd recorded)',
  },
  thumbnail_missing: { owner: 'ours', retry: 'when_fixed', meaning: 'a thumbnail is not in the store when pushing' },
  bad_process_details: { owner: 'ours', retry: 'when_fixed', meaning: "the datasource's sharpen/gamma/quality settings are invalid" },
  no_thumbnails: { owner: 'ours', retry: 'when_fixed', meaning: 'image_data lists no thumbnail files, so there is nothing to push' },
  bad_image_data: { owner: 'ours', retry: 'when_fixed', meaning: "the row's image_data does not match the contract" },
  frontend_down: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning: "a frontend could not be reached (or a local one's root is missing, or empty and unmarked: not mounted?); only its pushes wait",
  },
  frontend_timeout: { owner: 'ours', retry: 'when_fixed', meaning: 'a frontend stopped answering during a push' },
  frontend_disk_full: { owner: 'ours', retry: 'when_fixed', meaning: "a frontend's disk is full" },
  files_vanished: { owner: 'ours', retry: 'when_fixed', meaning: 'files went away from the store during a push' },
  rsync_missing: { owner: 'ours', retry: 'when_fixed', meaning: 'the rsync binary could not be started' },
  rsync_killed: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning: "our rsync was killed by a signal on this host (the OOM killer, an operator's kill): not the frontend's fault, which is not marked down",
  },
  rsync_error: { owner: 'ours', retry: 'when_fixed', meaning: 'rsync failed for another reason (module, permissions)' },
  no_frontends: { owner: 'ours', retry: 'when_fixed', meaning: 'no enabled frontend to push to' },
  s3_refused: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning:
      'S3 refused us a bucket of imaged.s3 (its key id, secret, region or endpoint, a bucket that is not there, or its policy: any 403, AccessDenied too), not the image',
  },
  s3_unavailable: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning:
      'the endpoint of a bucket of imaged.s3 that we operate (operatedBy us) is down: refused, reset or timed out, or it answered 5xx; not the image (a missing key is still http_404)',
  },
  dns_unavailable: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning: 'our DNS resolver does not answer (refused, timed out) or refuses us, so no host name can be looked up; not the source',
  },
  network_unavailable: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning:
      'our network is down: a connect could not leave this host (no route to the Internet for that address family, its IPv4 default gateway not answering ARP, no local address or port to send from, an interface down), or nothing answers beyond our gateway (a timeout, or a router answering unreachable, while no host reached lately nor download.uplinkProbeTargets answers a TCP connect either), so no host can be reached; not the source',
  },
  proxy_down: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning: 'the configured proxy (download.proxy) could not be reached (refused, unreachable, timed out connecting, its name not resolving), not the image',
  },
  host_throttled: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning:
      'not tried: its host asked us to wait (a 429 or 503 with Retry-After on another of its URLs), so its rows not yet started wait that long, uncharged',
  },
  database: { owner: 'ours', retry: 'when_fixed', meaning: 'the database could not be reached' },
  internal: {
    owner: 'ours',
    retry: 'when_fixed',
    meaning: 'a bug: an error nobody classified; its stack is logged below the ERROR line, naming the TypeScript file and line',
  },
} as const satisfies Record<string, FailureReason>;

export type FailureClass = keyof typeof FAILURE_REASONS;

/**
 * Our classes that an alert of their own covers: a store paused, a frontend down, our way out failing
 * (network_down), a worker that died (the database away). The others of ours (a bug, a lost original, files gone from the store) are the stage's
 * error-rate alert's, counted per worker and minute (worker_minutes.ours).
 */
const ALERTED_ON_THEIR_OWN: ReadonlySet<string> = new Set([
  'store_write_failed',
  'store_paused',
  'frontend_down',
  's3_refused',
  's3_unavailable',
  'network_unavailable',
  'dns_unavailable',
  'proxy_down',
  'frontend_timeout',
  'frontend_disk_full',
  'rsync_error',
  'no_frontends',
  'database',
]);

/** Rows held back uncharged that are nobody's fault: a host asked us to wait. Neither an error nor an alert. */
const NOBODYS_FAULT: ReadonlySet<string> = new Set(['host_throttled']);

/** True for a class of ours that only the stage's error-rate alert tells operators about (an unknown class: a bug). */
export function ownedByStageErrorRate(errorClass: string): boolean {
  return !isSourceFault(errorClass) && !ALERTED_ON_THEIR_OWN.has(errorClass) && !NOBODYS_FAULT.has(errorClass);
}

/** The rule for a class; an unknown class is treated as our bug, so nobody is blamed for it. */
export function failureReason(errorClass: string): FailureReason {
  return (FAILURE_REASONS as Record<string, FailureReason>)[errorClass] ?? FAILURE_REASONS.internal;
}

/** True only when the source (URL, server, file) is at fault: what attempts and datasource rates count. */
export function isSourceFault(errorClass: string): boolean {
  return failureReason(errorClass).owner === 'source';
}

/** The classes that count against a datasource, for SQL (`last_error_class = ANY(...)`). */
export function sourceFaultClasses(): string[] {
  return Object.entries(FAILURE_REASONS)
    .filter(([, r]) => r.owner === 'source')
    .map(([c]) => c);
}
