import net from 'node:net';
import type { HostPort } from '../net/host-port.ts';
import type { DownloadFailure } from './classify-download-error.ts';
import { noRouteFailures } from './uplink-probe.ts';

/** How many distinct hosts that answered are kept as references (the most recent ones). */
const RING_SIZE = 8;

/** A host that answered a download of ours: the URL's host name and the address and port its socket reached. */
export interface Reached {
  host: string;
  address: string;
  port: number;
}

/** An outside reference to connect to: a host that answered lately, or a configured probe target. */
export interface Reference {
  host: string;
  port: number;
  /** `198.51.100.1:80`, `[2001:db8::1]:443`, `probe.example.net:443`: for the reason. */
  label: string;
  /** Known for the hosts reached lately (their address); null for a configured name (any family). */
  family: 4 | 6 | null;
}

/** What the references said about our way out: none to ask, one answered (the source is at fault), or none did. */
export type WayOutVerdict = { kind: 'no_reference' } | { kind: 'answered'; by: string } | { kind: 'silent'; tried: string[] };

const familyOf = (address: string): 4 | 6 | null => (net.isIPv4(address) ? 4 : net.isIPv6(address) ? 6 : null);
const labelOf = (host: string, port: number) => (net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`);

/**
 * Pure: the references to judge a failure of `host` (the URL's host name; `addresses`: those its connects were for,
 * when known) by: the hosts reached lately, newest first, and then the configured targets, but never the failing
 * host itself, by name or address (a reference is an outside one, or it tells nothing), and, when `families` is
 * given (a connect that could not leave: its family), only those of that family.
 */
export function referencesFor(
  ring: readonly Reached[],
  targets: readonly HostPort[],
  host: string,
  addresses: readonly string[],
  families: ReadonlySet<4 | 6> | null,
): Reference[] {
  const failing = new Set([host.toLowerCase().replace(/^\[|\]$/g, ''), ...addresses]);
  const out: Reference[] = [];
  for (const r of ring) {
    const family = familyOf(r.address);
    if (failing.has(r.host) || failing.has(r.address) || (families && family && !families.has(family))) continue;
    out.push({ host: r.address, port: r.port, label: labelOf(r.address, r.port), family });
  }
  for (const t of targets) {
    const family = familyOf(t.host);
    if (failing.has(t.host) || (families && family && !families.has(family))) continue;
    out.push({ host: t.host, port: t.port, label: labelOf(t.host, t.port), family });
  }
  return out;
}

/** Pure: the ring after `reached` answered: it first, without its older entry, the RING_SIZE newest distinct addresses. */
export function ringWith(ring: readonly Reached[], reached: Reached): Reached[] {
  return [reached, ...ring.filter((r) => r.address !== reached.address)].slice(0, RING_SIZE);
}

/**
 * Whether a TCP connect to `host:port` got an answer from the far side within `boundMs`: connected, or refused (a
 * reset came back, so our packets went out and back). A timeout, an unreachable, a name that does not resolve: none.
 */
function answers(host: string, port: number, boundMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (answered: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), boundMs);
    socket.once('connect', () => done(true));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code === 'ECONNREFUSED'));
  });
}

/**
 * Tells a network dead beyond our gateway from one slow source. With our router up (it answers ARP) but its uplink
 * down, every connect to the Internet times out (or its packets vanish, or the router answers "unreachable"): the
 * routes are there, so UplinkProbe finds nothing, and every row of every feed was charged `timeout` (or
 * `connection`): a long outage failed the backlog after queue.maxAttempts, and bad_datasources could disable feeds.
 * Telling that from one slow source needs an outside reference: the hosts our downloads reached lately (the last
 * RING_SIZE distinct addresses that answered) and the configured download.uplinkProbeTargets. On such a failure
 * they are connected to (TCP, within `boundMs`): if one answers, our way out works and the source is at fault; if
 * none does, it is ours. No reference at all (a fresh start, none configured): the source's, as before.
 *
 * The hosts reached are kept whatever their age: an outage outlasting any age limit would empty the ring and charge
 * the rows again, which is what this is for. One found silent while another answers is dropped (it went away, the
 * way out works), so the ring does not keep a dead host for ever. Each reference is asked at most once in `ttlMs` (monotonic),
 * so a backlog of timeouts probes once, not once per row.
 */
export class WayOutProbe {
  private ring: Reached[] = [];
  private readonly asked = new Map<string, { at: number; answered: Promise<boolean> }>();

  constructor(
    private readonly targets: readonly HostPort[],
    readonly boundMs: number,
    private readonly ttlMs = 5000,
  ) {}

  /** A download got a response from `address:port` (for `host`): a reference from now on. */
  remember(reached: Reached): void {
    if (!familyOf(reached.address) || !reached.port) return;
    this.ring = ringWith(this.ring, { ...reached, host: reached.host.toLowerCase().replace(/^\[|\]$/g, '') });
  }

  /** The references for a failure of `host` (see referencesFor), asked; the ring is pruned of those silent while another answered. */
  async judge(host: string, addresses: readonly string[], families: ReadonlySet<4 | 6> | null): Promise<WayOutVerdict> {
    const references = referencesFor(this.ring, this.targets, host, addresses, families);
    if (references.length === 0) return { kind: 'no_reference' };
    const answered = await Promise.all(references.map((r) => this.ask(r)));
    const by = references.find((_, i) => answered[i]);
    if (!by) return { kind: 'silent', tried: references.map((r) => r.label) };
    const silent = new Set(references.filter((_, i) => !answered[i]).map((r) => r.host));
    this.ring = this.ring.filter((r) => !silent.has(r.address));
    return { kind: 'answered', by: by.label };
  }

  private ask(reference: Reference): Promise<boolean> {
    const last = this.asked.get(reference.label);
    if (last && performance.now() - last.at <= this.ttlMs) return last.answered;
    // Answers past their time are no use: the map holds the references of the last few seconds only.
    for (const [label, entry] of this.asked) if (performance.now() - entry.at > this.ttlMs) this.asked.delete(label);
    const answered = answers(reference.host, reference.port, this.boundMs);
    this.asked.set(reference.label, { at: performance.now(), answered });
    return answered;
  }
}

/**
 * Pure: the addresses a connect to `host` was for, when known: the host itself when it is an IP literal, else those
 * Node tried (a socket's autoSelectFamilyAttemptedAddresses, `address:port` each); none when neither says.
 */
export function targetAddresses(host: string, attempted: readonly string[] | undefined): string[] {
  const bare = host.replace(/^\[|\]$/g, '');
  if (familyOf(bare)) return [bare];
  return (attempted ?? []).map((a) => a.slice(0, a.lastIndexOf(':')).replace(/^\[|\]$/g, '')).filter((a) => familyOf(a) !== null);
}

/** The failing target of judgeBeyondGateway. */
export interface FailedTarget {
  /** The URL's host name (or the endpoint's): never its own reference. */
  host: string;
  /** What could not be reached, in the reason (`the endpoint of bucket feed`); the host by default. */
  what?: string;
  /** The addresses its connects were for, when known (targetAddresses): references of their families only. */
  addresses?: readonly string[];
}

/**
 * What a failure before any response becomes once the way out is judged: a timeout (any phase: the connect, the
 * first byte on a kept-alive socket, the lookup) or a connect that a router on the way refused (`unreachable`, with
 * routes of our own) is `network_unavailable`, uncharged, when no outside reference of the target's address family
 * (any, when it is not known) answered either; the source's as before, saying so, when one did; unchanged without
 * references. Other failures are not asked about.
 */
export async function judgeBeyondGateway(probe: WayOutProbe, failure: DownloadFailure, error: unknown, target: FailedTarget): Promise<DownloadFailure> {
  const unreachable = failure.errorClass === 'connection' ? noRouteFailures(error) : null;
  if (failure.errorClass !== 'timeout' && !unreachable) return failure;
  const addresses = unreachable ? unreachable.map((f) => f.address) : [...(target.addresses ?? [])];
  const families = new Set(addresses.map(familyOf).filter((f): f is 4 | 6 => f !== null));
  const verdict = await probe.judge(target.host, addresses, families.size > 0 ? families : null);
  return wayOutFailure(failure, verdict, target.what ?? target.host, probe.boundMs);
}

/** Pure: the failure to record for `verdict` (judgeBeyondGateway). */
export function wayOutFailure(failure: DownloadFailure, verdict: WayOutVerdict, host: string, boundMs: number): DownloadFailure {
  if (verdict.kind === 'no_reference') return failure;
  if (verdict.kind === 'answered') return { ...failure, reason: `${failure.reason} (our way out works: ${verdict.by} answered)` };
  const tried = verdict.tried.length > 3 ? `${verdict.tried.slice(0, 3).join(', ')} and ${verdict.tried.length - 3} more` : verdict.tried.join(', ');
  return {
    reason: `network unavailable: nothing answers beyond our gateway (no TCP answer within ${boundMs} ms from ${tried}), so ${host} could not be reached (${failure.reason}); not the source's fault`,
    errorClass: 'network_unavailable',
    retryable: true,
  };
}
