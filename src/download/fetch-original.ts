import type { IncomingHttpHeaders } from 'node:http';
import type { Request as GotRequest } from 'got';
import { classifyDownloadError, classifyTransferError, statusFailure, type DownloadFailure, type TransferSoFar } from './classify-download-error.ts';
import type { DownloadClient } from './download-client.ts';
import { DownloadError } from './download-error.ts';
import { OriginalWriter, type WrittenOriginal } from './original-writer.ts';
import { proxyFault } from './proxy-fault.ts';
import { judgeBeyondGateway, targetAddresses, type FailedTarget } from './way-out-probe.ts';
import type { ImageFormat } from './magic-sniff.ts';

export interface FetchRequest {
  url: string;
  /** Where the original goes (originalPath). */
  destination: string;
  /** Validators from the last download: sent as If-None-Match / If-Modified-Since. */
  conditional?: { etag: string | null; lastModified: string | null };
  /** The last original's SHA-256: equal bytes are not written again. */
  previousHash?: string | null;
  maxBytes: number;
  /** thumbnail.maxPixels: a doubted file over it is not decoded by the download (OriginalWriter). */
  maxPixels: number;
  totalMs: number;
  /** Aborts at once (a stop whose grace ran out); the outcome is then `stopped`. */
  signal?: AbortSignal;
  /** The store's guard before a folder is made (WriterLimits). */
  beforeMakingFolders?: () => Promise<void>;
}

interface Validators {
  etag: string | null;
  lastModified: string | null;
}

export type FetchOutcome =
  | ({ kind: 'stored' | 'identical'; bytes: number; contentHash: string; format: ImageFormat; unverified?: string } & Validators)
  | ({ kind: 'not_modified' } & Validators)
  | { kind: 'failed'; failure: DownloadFailure }
  | { kind: 'stopped' };

/** The outcome of an original written to the store, whatever brought its bytes (HTTP, S3, a folder). Pure. */
export function writtenOutcome(written: WrittenOriginal, found: Validators): FetchOutcome {
  const { stored, ...kept } = written;
  return { kind: stored ? 'stored' : 'identical', ...kept, ...found };
}

interface ResponseHead {
  statusCode: number;
  statusMessage?: string;
  headers: IncomingHttpHeaders;
}

class Stopped extends Error {}

/** Resolves on the response headers; rejects on an error or a close that comes first. */
function responseOf(stream: GotRequest): Promise<ResponseHead> {
  return new Promise((resolve, reject) => {
    const done = () => {
      stream.off('response', onResponse);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onResponse = (response: ResponseHead) => (done(), resolve(response));
    const onError = (error: Error) => (done(), reject(error));
    const onClose = () => (done(), reject(stream.errored ?? new Error('the request closed before a response')));
    stream.once('response', onResponse);
    stream.once('error', onError);
    stream.once('close', onClose);
  });
}

function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return 'the host';
  }
}

/** The host a request failed on (the last redirect's) and the addresses it was connecting to, when known. */
function failedTarget(stream: GotRequest, url: string): FailedTarget {
  const host = stream.requestUrl?.hostname ?? hostOf(url);
  return {
    host,
    addresses: targetAddresses(host, (stream.socket as { autoSelectFamilyAttemptedAddresses?: string[] } | undefined)?.autoSelectFamilyAttemptedAddresses),
  };
}

function validators(headers: IncomingHttpHeaders): Validators {
  const etag = typeof headers.etag === 'string' && headers.etag.length <= 500 ? headers.etag : null;
  const lastModified = typeof headers['last-modified'] === 'string' && headers['last-modified'].length <= 100 ? headers['last-modified'] : null;
  return { etag, lastModified };
}

/**
 * One download, start to end, never throwing: the response is judged (304,
 * status), the body streamed through an OriginalWriter (sniff, size, hash,
 * temp file + rename) under a deadline for the whole thing, and any failure
 * classified. Nothing is left half-written whatever the server does.
 *
 * A request sent on a kept-alive socket that the server had just closed (its
 * keep-alive timeout ran out as we reused it: Node's documented race) fails
 * before any response, through no fault of the source: it is sent again
 * (on another pooled socket, or a new connection), within the same deadline,
 * as Node's docs advise (`request.reusedSocket`).
 */
export async function fetchOriginal(client: DownloadClient, request: FetchRequest): Promise<FetchOutcome> {
  // The monotonic clock: a step of the wall clock must not cut a download's time short nor stretch it.
  const started = performance.now();
  for (;;) {
    const attempt = await fetchOnce(client, request, request.totalMs - (performance.now() - started));
    // Each stale failure drops that socket from the pool (at most maxFreeSockets of them), so this ends:
    // at the latest on a new connection, whose failure is the source's.
    if (!attempt.staleSocket || performance.now() - started >= request.totalMs) return attempt.outcome;
  }
}

/** One request; `leftMs` is what remains of request.totalMs. `staleSocket`: it failed as a reused socket does when the server had closed it. */
async function fetchOnce(client: DownloadClient, request: FetchRequest, leftMs: number): Promise<{ outcome: FetchOutcome; staleSocket?: boolean }> {
  const headers: Record<string, string> = {};
  if (request.conditional?.etag) headers['if-none-match'] = request.conditional.etag;
  if (request.conditional?.lastModified) headers['if-modified-since'] = request.conditional.lastModified;
  const conditional = Object.keys(headers).length > 0;
  const started = performance.now();

  let stream: GotRequest;
  try {
    stream = client.got.stream(request.url, { headers });
  } catch (error) {
    return { outcome: { kind: 'failed', failure: classifyDownloadError(error) } };
  }
  // Errors are read through responseOf and the iterator; this keeps a late one from being "unhandled".
  stream.on('error', () => {});
  const deadline = setTimeout(() => {
    stream.destroy(new DownloadError('timeout', `timeout: not done within ${request.totalMs / 1000} s (download.timeouts.totalSeconds)`, { retryable: true }));
  }, leftMs);
  const onStop = () => stream.destroy(new Stopped('stopping'));
  request.signal?.addEventListener('abort', onStop, { once: true });
  if (request.signal?.aborted) onStop();

  let transfer: TransferSoFar | null = null;
  let writer: OriginalWriter | null = null;
  try {
    const response = await responseOf(stream);
    // Any response says the way out works to there: an outside reference for later timeouts (not through a proxy,
    // whose socket it is).
    if (!client.proxy && stream.socket?.remoteAddress)
      client.wayOut.remember({
        host: stream.requestUrl?.hostname ?? hostOf(request.url),
        address: stream.socket.remoteAddress,
        port: stream.socket.remotePort ?? 0,
      });
    const length = Number(response.headers['content-length']);
    transfer = {
      declared: !response.headers['content-encoding'] && response.headers['content-length'] !== undefined && Number.isSafeInteger(length) ? length : null,
      chunked: /chunked/i.test(String(response.headers['transfer-encoding'] ?? '')),
      received: 0,
    };
    const found = validators(response.headers);
    if (response.statusCode === 304 && conditional) {
      return {
        outcome: {
          kind: 'not_modified',
          etag: found.etag ?? request.conditional?.etag ?? null,
          lastModified: found.lastModified ?? request.conditional?.lastModified ?? null,
        },
      };
    }
    if (response.statusCode !== 200 && response.statusCode !== 203) {
      throw statusFailure(response.statusCode, response.statusMessage, response.headers['retry-after'], response.headers.date);
    }
    const declared = Number(response.headers['content-length']);
    if (!response.headers['content-encoding'] && Number.isFinite(declared) && declared > request.maxBytes) {
      // Only ever a reason to stop early: a smaller Content-Length is not trusted, the bytes are counted.
      throw new DownloadError('too_large', `too large: Content-Length ${declared} is over ${request.maxBytes} bytes (download.maxBytes)`, { retryable: false });
    }
    writer = new OriginalWriter(request.destination, {
      maxBytes: request.maxBytes,
      beforeMakingFolders: request.beforeMakingFolders,
      maxPixels: request.maxPixels,
      until: started + leftMs,
      signal: request.signal,
    });
    for await (const chunk of stream) {
      transfer.received += (chunk as Buffer).length;
      await writer.write(chunk as Buffer);
    }
    return { outcome: writtenOutcome(await writer.finish(request.previousHash), found) };
  } catch (error) {
    await writer?.discard();
    // A stop during the decoder's check comes as the signal's reason, the transfer being over.
    if (error instanceof Stopped || stream.errored instanceof Stopped || request.signal?.aborted) return { outcome: { kind: 'stopped' } };
    // Leaving the loop early destroys the stream with a bare AbortError: the error we threw is the story.
    // Through a proxy, a socket that cannot be made is the proxy's (ours), not the image's.
    // And a name that cannot be looked up because our own resolver is down is ours too, as is a connect that
    // cannot leave this host (no route out: our network down).
    // A timeout, or a router's "unreachable", with no response at all: our network dead beyond the gateway, when
    // nothing outside answers either (judgeBeyondGateway). Through a proxy the way out is the proxy's: not asked.
    const failure = transfer
      ? classifyTransferError(error, transfer)
      : ((client.proxy && proxyFault(error, client.proxy)) ??
        (await client.resolver.oursInstead(error, hostOf(request.url))) ??
        (await client.uplink.oursInstead(error, hostOf(request.url))) ??
        (client.proxy
          ? classifyDownloadError(error)
          : await judgeBeyondGateway(client.wayOut, classifyDownloadError(error), error, failedTarget(stream, request.url))));
    // No response at all on a reused socket that was reset or closed: the stale keep-alive race.
    const staleSocket = !transfer && stream.reusedSocket === true && failure.errorClass === 'connection';
    return { outcome: { kind: 'failed', failure }, staleSocket };
  } finally {
    clearTimeout(deadline);
    request.signal?.removeEventListener('abort', onStop);
    if (!stream.destroyed) stream.destroy();
  }
}
