import type { S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import type { S3Bucket } from '../config/imaged-config.ts';
import { errorMessage } from '../errors.ts';
import { endpointLabel, s3UnavailableReason } from '../failure/s3-unavailable.ts';
import { storeErrorOf, storeWriteFailure, type DownloadFailure } from './classify-download-error.ts';
import { UplinkProbe } from './uplink-probe.ts';
import { judgeBeyondGateway, targetAddresses, WayOutProbe } from './way-out-probe.ts';
import { DownloadError } from './download-error.ts';
import { writtenOutcome, type FetchOutcome, type FetchRequest } from './fetch-original.ts';
import { OriginalWriter } from './original-writer.ts';
import { parseS3Url } from '../net/s3-url.ts';

/** The downloader's phase limits (download.timeouts), which hold for S3 as for HTTP. */
export interface S3Limits {
  connectMs: number;
  firstByteMs: number;
}

/**
 * The S3 SDK, loaded on the first `s3://` download: it is a fifth of a daemon's start-up CPU, and most
 * deployments (and every `lis` command) never fetch from S3.
 */
let sdk: Promise<typeof import('@aws-sdk/client-s3')> | null = null;
const loadSdk = () => (sdk ??= import('@aws-sdk/client-s3'));

/** One client per configured bucket, made on first use (they keep their sockets). */
export class S3Clients {
  private readonly clients = new Map<string, S3Client>();
  constructor(
    private readonly buckets: Record<string, S3Bucket>,
    readonly limits: S3Limits,
    /** Whether this host has a route out (the download client's): a connect that cannot leave is ours. */
    readonly uplink: UplinkProbe = new UplinkProbe(),
    /** Whether anything beyond our gateway answers (the download client's): a timeout of the endpoint may be ours. */
    readonly wayOut: WayOutProbe = new WayOutProbe([], limits.connectMs),
  ) {}

  /** The bucket's imaged.s3 entry; null when it has none. */
  settingsOf(bucket: string): S3Bucket | null {
    return this.buckets[bucket] ?? null;
  }

  async clientFor(bucket: string): Promise<S3Client | null> {
    const settings = this.buckets[bucket];
    if (!settings) return null;
    const { S3Client } = await loadSdk();
    let client = this.clients.get(bucket);
    if (!client) {
      client = new S3Client({
        region: settings.region,
        ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
        forcePathStyle: settings.forcePathStyle,
        credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
        // The queue retries, with backoff; a request here is tried once, like an HTTP download.
        maxAttempts: 1,
        // The SDK has no connect limit of its own: a host that drops the SYN would wait for the OS's.
        requestHandler: { connectionTimeout: this.limits.connectMs },
      });
      this.clients.set(bucket, client);
    }
    return client;
  }

  destroy(): void {
    for (const client of this.clients.values()) client.destroy();
    this.clients.clear();
  }
}

/**
 * S3's answers that refuse us the bucket, not the key: our credentials (a key id S3 does not know, a wrong
 * secret, an expired or bad token), our clock, our region or endpoint, a bucket name in our config that does
 * not exist, or a policy that does not let us read. The bucket's endpoint and credentials are ours
 * (imaged.s3), so no row and no datasource is to blame: every key of the bucket fails the same way until an
 * operator fixes the config or the policy. (S3 answers a 403 AccessDenied for a missing key too when we may
 * not list the bucket: it will not say which, and only granting s3:ListBucket lets it say NoSuchKey.)
 */
const REFUSED_US = new Set([
  'AccessDenied',
  'AccountProblem',
  'AllAccessDisabled',
  'AuthorizationHeaderMalformed',
  'ExpiredToken',
  'IllegalLocationConstraintException',
  'InvalidAccessKeyId',
  'InvalidBucketName',
  'InvalidToken',
  'NoSuchBucket',
  'NotSignedUp',
  'PermanentRedirect',
  'RequestTimeTooSkewed',
  'SignatureDoesNotMatch',
  'TokenRefreshRequired',
]);

/** What S3 said, as the same failure classes an HTTP download records, and `s3_refused` for what is ours to fix. Pure. */
export function classifyS3Error(error: unknown, bucket = '?'): DownloadFailure {
  if (error instanceof DownloadError) return { reason: error.message, errorClass: error.errorClass, retryable: error.retryable };
  // Our disk failing while the body is written (it names a path): ours, as for an HTTP download, not a broken connection.
  const store = storeErrorOf(error);
  if (store) return storeWriteFailure(store);
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const reason = `S3 ${e.name ?? 'error'}: ${errorMessage(error)}`;
  // Any 403: with our own credentials it is our key, our clock or the bucket's policy, never the image.
  if ((e.name !== undefined && REFUSED_US.has(e.name)) || status === 403 || status === 301)
    return { reason: `${reason} (bucket ${bucket}: check its imaged.s3 entry and the bucket's policy)`, errorClass: 's3_refused', retryable: true };
  if (e.name === 'NoSuchKey' || e.name === 'NotFound' || status === 404) return { reason, errorClass: 'http_404', retryable: false };
  // RequestTimeout (400): S3 gave up waiting for our request's bytes; a passing fault, as HTTP's 408 is retried.
  if (e.name === 'TimeoutError' || e.name === 'AbortError' || e.name === 'RequestTimeout') return { reason, errorClass: 'timeout', retryable: true };
  if (status !== undefined && status >= 500) return { reason, errorClass: 'http_5xx', retryable: true };
  if (status !== undefined && status >= 400) return { reason, errorClass: 'http_4xx', retryable: false };
  return { reason, errorClass: 'connection', retryable: true };
}

/**
 * The classes that say the endpoint did not serve us (refused, reset, a DNS name that does not resolve: all
 * `connection` here; slow or silent: `timeout`; a body cut short: `truncated`; its own failure: `http_5xx`),
 * whatever the key. Not a missing key (`http_404`), not other 4xx, not the object's bytes.
 */
const ENDPOINT_DOWN: ReadonlySet<string> = new Set(['connection', 'timeout', 'truncated', 'http_5xx']);

/**
 * A failure as whoever runs the bucket's endpoint is to be blamed for it. Pure. For a bucket we operate
 * (imaged.s3 `operatedBy: "us"`, a MinIO next to us), the endpoint down or failing is our outage,
 * `s3_unavailable`: given back uncharged and alerted, never charged to the row nor counted against its
 * datasource, as a frontend down is; otherwise every row of the bucket would burn its attempts and fail for
 * good, and bad_datasources would disable the datasources, for a server of ours. For a feed's own bucket
 * (`source`) it stays the source's fault, as an HTTP server's.
 */
export function blameEndpoint(failure: DownloadFailure, bucket: string, settings: S3Bucket): DownloadFailure {
  if (settings.operatedBy !== 'us' || !ENDPOINT_DOWN.has(failure.errorClass)) return failure;
  return {
    reason: s3UnavailableReason(bucket, endpointLabel(settings.endpoint, settings.region), failure.reason),
    errorClass: 's3_unavailable',
    retryable: true,
  };
}

/**
 * An `s3://bucket/key` original, through the real S3 API with the bucket's
 * configured endpoint and credentials, into the store by the same
 * OriginalWriter (sniff, size limit, hash, temp + rename) and under the same
 * limits as an HTTP one (connect, first byte, the whole download). Never throws.
 */
export async function fetchS3Original(clients: S3Clients, request: FetchRequest): Promise<FetchOutcome> {
  const target = parseS3Url(request.url);
  const client = target ? await clients.clientFor(target.bucket) : null;
  const settings = target ? clients.settingsOf(target.bucket) : null;
  if (!target || !client || !settings) {
    return {
      kind: 'failed',
      failure: {
        reason: target
          ? `bad URL: no configured S3 bucket for ${JSON.stringify(request.url.slice(0, 200))} (imaged.s3)`
          : `bad URL: not s3://bucket/key with a valid key: ${JSON.stringify(request.url.slice(0, 200))}`,
        errorClass: 'bad_url',
        retryable: false,
      },
    };
  }
  const abort = new AbortController();
  const started = performance.now();
  const deadline = setTimeout(() => abort.abort(), request.totalMs);
  // An endpoint that accepts and never answers is cut where an HTTP server would be (connect, then the first
  // byte), not held until the whole download's limit: every row of the bucket would keep a slot that long.
  let noAnswer = false;
  const firstByte = setTimeout(() => {
    noAnswer = true;
    abort.abort();
  }, clients.limits.connectMs + clients.limits.firstByteMs);
  const onStop = () => abort.abort();
  request.signal?.addEventListener('abort', onStop, { once: true });
  let writer: OriginalWriter | null = null;
  try {
    const { GetObjectCommand } = await loadSdk();
    const response = await client.send(new GetObjectCommand({ Bucket: target.bucket, Key: target.key }), { abortSignal: abort.signal });
    clearTimeout(firstByte);
    if (response.ContentLength !== undefined && response.ContentLength > request.maxBytes) {
      throw new DownloadError('too_large', `too large: ContentLength ${response.ContentLength} is over ${request.maxBytes} bytes (download.maxBytes)`, {
        retryable: false,
      });
    }
    writer = new OriginalWriter(request.destination, {
      maxBytes: request.maxBytes,
      beforeMakingFolders: request.beforeMakingFolders,
      maxPixels: request.maxPixels,
      until: started + request.totalMs,
      signal: request.signal,
    });
    for await (const chunk of response.Body as Readable) await writer.write(chunk as Buffer);
    return writtenOutcome(await writer.finish(request.previousHash), {
      etag: response.ETag ?? null,
      lastModified: response.LastModified?.toUTCString() ?? null,
    });
  } catch (error) {
    await writer?.discard();
    if (request.signal?.aborted) return { kind: 'stopped' };
    // Our network down (no route out, or nothing answering beyond our gateway) is ours whoever runs the bucket, as
    // for an HTTP download.
    const what = `the endpoint of bucket ${target.bucket}`;
    const endpointHost = settings.endpoint ? new URL(settings.endpoint).hostname : `s3.${settings.region}.amazonaws.com`;
    const ours = noAnswer || abort.signal.aborted ? null : await clients.uplink.oursInstead(error, what);
    const failure =
      ours ??
      (await judgeBeyondGateway(clients.wayOut, failureOf(error, noAnswer, abort.signal.aborted, request.totalMs, target.bucket), error, {
        host: endpointHost,
        what,
        addresses: targetAddresses(endpointHost, undefined),
      }));
    return { kind: 'failed', failure: blameEndpoint(failure, target.bucket, settings) };
  } finally {
    clearTimeout(deadline);
    clearTimeout(firstByte);
    request.signal?.removeEventListener('abort', onStop);
  }
}

/** What went wrong with one GetObject: our own limits first (they abort the request), else what S3 said. Pure. */
function failureOf(error: unknown, noAnswer: boolean, aborted: boolean, totalMs: number, bucket: string): DownloadFailure {
  if (noAnswer)
    return { reason: 'timeout: waiting for the first byte took too long (download.timeouts.firstByteSeconds)', errorClass: 'timeout', retryable: true };
  if (aborted) return { reason: `timeout: not done within ${totalMs / 1000} s (download.timeouts.totalSeconds)`, errorClass: 'timeout', retryable: true };
  return classifyS3Error(error, bucket);
}
