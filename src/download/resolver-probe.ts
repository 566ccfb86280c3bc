import dns from 'node:dns';
import type { DownloadFailure } from './classify-download-error.ts';

/** c-ares codes that mean no resolver of ours answered, or it refused to: nothing can be looked up, whatever the name. */
const NO_ANSWER = new Set(['ECONNREFUSED', 'ETIMEOUT', 'EREFUSED']);

/** Asks our own resolver about the root zone, as c-ares does (it reads /etc/resolv.conf): null when it answers at all. */
async function askResolver(timeoutMs: number): Promise<string | null> {
  try {
    await new dns.promises.Resolver({ timeout: timeoutMs, tries: 1 }).resolveNs('.');
    return null;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // Any answer (NXDOMAIN, SERVFAIL, no data) is a resolver that works: the name's own servers are at fault then.
    return typeof code === 'string' && NO_ANSWER.has(code) ? `${code} from ${dns.getServers().join(', ') || 'no nameserver'}` : null;
  }
}

/** True for getaddrinfo's EAI_AGAIN anywhere in the error's chain: a temporary failure, ours or the name's servers'. */
export function isTemporaryDnsFailure(error: unknown): boolean {
  for (
    let e = error as { code?: unknown; cause?: unknown } | undefined, depth = 0;
    e && typeof e === 'object' && depth < 10;
    e = e.cause as typeof e, depth++
  ) {
    if (e.code === 'EAI_AGAIN') return true;
  }
  return false;
}

/**
 * Tells our resolver failing from a source's name failing. getaddrinfo says EAI_AGAIN for both: a host's name
 * servers that fail (SERVFAIL), and our own resolver down or unreachable, when every host of every feed fails
 * alike. Charged to the rows as `dns`, the second made the whole backlog fail after queue.maxAttempts (about
 * 15 min with the default backoff). So on EAI_AGAIN our resolver is asked directly (the root zone's NS, one try):
 * no answer at all (refused, timed out) or a refusal to serve us is ours, `dns_unavailable`, given back uncharged.
 * One question at a time, its verdict kept `ttlMs`, so a chunk of failing rows asks once (on the
 * monotonic clock: on the wall clock, a step back of an hour kept a verdict of "no resolver" that hour).
 */
export class ResolverProbe {
  private last: { at: number; verdict: Promise<string | null> } | null = null;

  constructor(
    private readonly ttlMs = 5000,
    private readonly timeoutMs = 3000,
  ) {}

  /** Why our resolver is down, or null when it answers. */
  check(): Promise<string | null> {
    if (!this.last || performance.now() - this.last.at > this.ttlMs) this.last = { at: performance.now(), verdict: askResolver(this.timeoutMs) };
    return this.last.verdict;
  }

  /** The failure to record instead of the source's `dns`, when our resolver is the one down; else null. */
  async oursInstead(error: unknown, host: string): Promise<DownloadFailure | null> {
    if (!isTemporaryDnsFailure(error)) return null;
    const down = await this.check();
    if (!down) return null;
    return {
      reason: `DNS unavailable: our resolver does not answer (${down}), so ${host} could not be looked up; not the source's fault`,
      errorClass: 'dns_unavailable',
      retryable: true,
    };
  }
}
