import type { LisConfig } from '../config/config-schema.ts';
import { hostKey } from '../download/download-worker.ts';
import type { FetchOutcome, FetchRequest } from '../download/fetch-original.ts';
import { drainLimiter, HostLimiter } from '../download/host-limiter.ts';

/** HostSlots' drains are never stopped (no chunk to stop here): each ends once the fetches it started are done. */
const NEVER = new AbortController().signal;

/** What lis_imaged fetches originals through: a SchemeFetcher, or one behind HostSlots. */
export interface OriginalFetcher {
  fetch(request: FetchRequest): Promise<FetchOutcome>;
}

/**
 * The downloader's per-host limits for lis_imaged's fetches: at most
 * `download.perHostConcurrency` in flight to one host, starts at least
 * `download.perHostDelaySeconds` apart, `download.concurrency` in all, with
 * lis_downloadd's own HostLimiter. Without it, `imaged.maxGenerations`
 * requests for new keys of one origin (or queued rows of one site) opened as
 * many connections to that host at once, whatever it was promised. Local
 * files (`file://`) have no host and are not limited.
 */
export class HostSlots implements OriginalFetcher {
  private readonly limiter: HostLimiter;

  constructor(
    private readonly fetcher: OriginalFetcher,
    download: LisConfig['download'],
  ) {
    this.limiter = new HostLimiter({
      concurrency: download.concurrency,
      perHost: download.perHostConcurrency,
      perHostDelayMs: download.perHostDelaySeconds * 1000,
    });
  }

  /** Fetches waiting for their host's turn (tests and metrics). */
  get queued(): number {
    return this.limiter.queued;
  }

  fetch(request: FetchRequest): Promise<FetchOutcome> {
    const host = request.url.startsWith('file:') ? null : hostKey(request.url);
    if (!host) return this.fetcher.fetch(request);
    return new Promise<FetchOutcome>((resolve, reject) => {
      this.limiter.add(host, () => this.fetcher.fetch(request).then(resolve, reject));
      // A drain per fetch, as lis_downloadd runs one per chunk: it also starts fetches queued by others.
      void drainLimiter<() => Promise<void>>(this.limiter, (run) => run(), NEVER);
    });
  }
}
