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

/** A fetch waiting for its host's turn in the limiter's queue. */
interface QueuedFetch {
  start: () => Promise<void>;
}

/**
 * The downloader's per-host limits for lis_imaged's fetches: at most
 * `download.perHostConcurrency` in flight to one host, starts at least
 * `download.perHostDelaySeconds` apart, `download.concurrency` in all, with
 * lis_downloadd's own HostLimiter. Without it, `imaged.maxGenerations`
 * requests for new keys of one origin (or queued rows of one site) opened as
 * many connections to that host at once, whatever it was promised. Local
 * files (`file://`) have no host and are not limited.
 * A fetch of a generation that every request has left (hung up, or answered
 * 503 past imaged.timeoutSeconds) leaves the queue at once while it waits for
 * its turn, `stopped`: it kept the generation's slot and lock transaction for
 * a turn nobody needed, and would then have taken its host's place and delay
 * for nothing. So does one whose own FetchRequest.signal aborts meanwhile
 * (fetchFromCandidates' stop once another source has arrived): its turn would
 * have started a fetch already stopped.
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

  /**
   * `unwanted` (the generation's, see GenerationGate) or the request's own signal (fetchFromCandidates' stop once
   * another source has arrived): either aborted while the fetch waits for its host's turn, the fetch leaves the
   * queue at once, `stopped`; a fetch that has begun goes on (the request's signal then stops it in the fetcher),
   * as a started generation does.
   */
  fetch(request: FetchRequest, unwanted?: AbortSignal): Promise<FetchOutcome> {
    const host = request.url.startsWith('file:') ? null : hostKey(request.url);
    if (!host) return this.fetcher.fetch(request);
    const stops = [unwanted, request.signal].filter((s): s is AbortSignal => s !== undefined);
    if (stops.some((s) => s.aborted)) return Promise.resolve({ kind: 'stopped' });
    return new Promise<FetchOutcome>((resolve, reject) => {
      const unlisten = () => {
        for (const s of stops) s.removeEventListener('abort', leave);
      };
      const leave = () => {
        unlisten();
        if (this.limiter.remove(host, queued)) resolve({ kind: 'stopped' });
      };
      const queued: QueuedFetch = {
        start: () => {
          unlisten();
          return this.fetcher.fetch(request).then(resolve, reject);
        },
      };
      for (const s of stops) s.addEventListener('abort', leave, { once: true });
      this.limiter.add(host, queued);
      // A drain per fetch, as lis_downloadd runs one per chunk: it also starts fetches queued by others.
      void drainLimiter<QueuedFetch>(this.limiter, (next) => next.start(), NEVER);
    });
  }

  /** This fetcher for one generation: its fetches leave their wait for a turn once nobody wants the generation. */
  forGeneration(unwanted: AbortSignal): OriginalFetcher {
    return { fetch: (request) => this.fetch(request, unwanted) };
  }
}
