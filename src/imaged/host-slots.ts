import type { LisConfig } from '../config/config-schema.ts';
import { hostKey } from '../download/download-worker.ts';
import type { FetchOutcome, FetchRequest } from '../download/fetch-original.ts';
import { HostLimiter } from '../download/host-limiter.ts';

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
  private timer: NodeJS.Timeout | null = null;

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

  async fetch(request: FetchRequest): Promise<FetchOutcome> {
    const host = request.url.startsWith('file:') ? null : hostKey(request.url);
    if (!host) return this.fetcher.fetch(request);
    await new Promise<void>((start) => {
      this.limiter.add(host, start);
      this.pump();
    });
    try {
      return await this.fetcher.fetch(request);
    } finally {
      this.limiter.done(host);
      this.pump();
    }
  }

  /** Starts every fetch the limits allow now; when only a host's delay holds one back, looks again then. */
  private pump(): void {
    for (;;) {
      const next = this.limiter.take<() => void>();
      if (next === null) return;
      if ('waitMs' in next) {
        if (this.timer) clearTimeout(this.timer);
        this.timer = setTimeout(() => {
          this.timer = null;
          this.pump();
        }, next.waitMs);
        return;
      }
      next.item();
    }
  }
}
