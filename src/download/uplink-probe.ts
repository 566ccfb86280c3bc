import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import type { DownloadFailure } from './classify-download-error.ts';

/**
 * connect() codes that say no packet could leave for the target: no route (ENETUNREACH, or an `unreachable`
 * route: EHOSTUNREACH), or no address or port of ours to send from (EADDRNOTAVAIL), or the way out is down
 * (ENETDOWN). The kernel says the first two also when a router on the way answers "unreachable" (the
 * remote's side), so they alone do not tell whose fault it is: the uplink is asked (UplinkProbe).
 */
const NO_ROUTE = new Set(['ENETUNREACH', 'EHOSTUNREACH', 'EADDRNOTAVAIL', 'ENETDOWN']);

/**
 * Where a routing lookup for "anywhere on the Internet" goes: a public address of each family. A UDP socket's
 * connect() to it only looks the route up (no packet is sent); no route at all fails it with ENETUNREACH.
 */
const PUBLIC: Record<4 | 6, string> = { 4: '8.8.8.8', 6: '2001:4860:4860::8888' };

interface ErrorLike {
  message?: string;
  code?: string;
  syscall?: string;
  address?: string;
  cause?: unknown;
  errors?: unknown[];
}

/** A connect() that could not send: its code and the address it was for. */
export interface NoRoute {
  code: string;
  address: string;
  family: 4 | 6;
  message: string;
}

/**
 * Pure: the failed connect()s in an error (its causes, and the attempts of each family Node made, an
 * AggregateError's `errors`), when every one of them failed for want of a way out (NO_ROUTE). Null when there
 * was none, or when one got an answer from the far side (refused, reset, timed out): the way out worked.
 */
export function noRouteFailures(error: unknown): NoRoute[] | null {
  const connects: ErrorLike[] = [];
  const seen = new Set<unknown>();
  const visit = (e: unknown, depth: number) => {
    if (!e || typeof e !== 'object' || seen.has(e) || depth > 10) return;
    seen.add(e);
    const like = e as ErrorLike;
    if (like.syscall === 'connect' && typeof like.code === 'string') connects.push(like);
    if (Array.isArray(like.errors)) for (const inner of like.errors) visit(inner, depth + 1);
    visit(like.cause, depth + 1);
  };
  visit(error, 0);
  if (connects.length === 0 || !connects.every((e) => NO_ROUTE.has(e.code!))) return null;
  return connects.map((e) => ({
    code: e.code!,
    address: e.address ?? '',
    family: net.isIPv6(e.address ?? '') ? 6 : 4,
    message: e.message ?? String(e.code),
  }));
}

/**
 * Pure: whose fault a connect that could not send is. `uplink(family)`: why this host has no way out for that
 * family (null: it has one). EADDRNOTAVAIL and ENETDOWN are this host's whatever the target (no local address
 * or port to send from, an interface down). ENETUNREACH and EHOSTUNREACH are ours only when the host has no
 * way to the Internet for the target's family (no route at all, or its IPv4 default gateway silent to ARP):
 * with one, the target alone is unreachable (a router on the way said so, or an odd address), which is the
 * source's, `connection`, as before. A host without IPv6 whose
 * IPv4 works is no outage: an IPv6-only source stays the source's, so that such rows end rather than wait for ever.
 */
export function networkFault(failures: NoRoute[], uplink: Record<4 | 6, string | null>, host: string): DownloadFailure | null {
  const local = failures.find((f) => f.code === 'EADDRNOTAVAIL' || f.code === 'ENETDOWN');
  const allOurs = failures.every((f) => {
    if (f.code === 'EADDRNOTAVAIL' || f.code === 'ENETDOWN') return true;
    if (!uplink[f.family]) return false;
    return f.family === 4 || uplink[4] !== null;
  });
  if (!allOurs) return null;
  const first = local ?? failures[0];
  const why = local
    ? `this host has no address or port to send from, or its interface is down`
    : `this host has no way to the Internet (${uplink[first.family]})`;
  return {
    reason: `network unavailable: ${why}, so ${host} could not be reached (${first.message}); not the source's fault`,
    errorClass: 'network_unavailable',
    retryable: true,
  };
}

/**
 * Pure: the IPv4 default gateways (`/proc/net/route`) when none of them answers ARP (`/proc/net/arp`: an entry with
 * flags 0x0, incomplete), in words; null when one answers, or none is known, or the default route has no gateway
 * (a point-to-point link). A gateway that does not answer makes every connect fail with EHOSTUNREACH (after the
 * kernel's ~3 s of ARP), while the route itself is there: the router down, or our link to it. A router on the way
 * answering "unreachable" for one host needs a gateway that answered ARP, so it is told apart.
 */
export function silentGateways(routeText: string, arpText: string): string | null {
  const gateways = routeText
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 8 && f[1] === '00000000' && f[7] === '00000000' && /^[0-9A-F]{8}$/i.test(f[2]) && f[2] !== '00000000')
    // The kernel writes the address in host order, little-endian on the machines this runs on.
    .map((f) => ({ address: [6, 4, 2, 0].map((i) => parseInt(f[2].slice(i, i + 2), 16)).join('.'), device: f[0] }));
  if (gateways.length === 0) return null;
  const entries = new Map(
    arpText
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f.length >= 6)
      .map((f) => [`${f[0]} ${f[5]}`, f[2]] as const),
  );
  const silent = gateways.filter((g) => entries.get(`${g.address} ${g.device}`) === '0x0');
  if (silent.length < gateways.length) return null;
  return `our gateway ${silent.map((g) => `${g.address} on ${g.device}`).join(', ')} does not answer (no ARP reply)`;
}

/** silentGateways on this machine's tables; null where there are none to read (not Linux). */
function silentGatewaysHere(): string | null {
  try {
    return silentGateways(fs.readFileSync('/proc/net/route', 'utf8'), fs.readFileSync('/proc/net/arp', 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Why this host has no way to the Internet for `family` (`ENETUNREACH for 8.8.8.8`, or its IPv4 gateway silent),
 * or null when it has one.
 */
async function askUplink(family: 4 | 6): Promise<string | null> {
  const route = await askRoute(family);
  return route ?? (family === 4 ? silentGatewaysHere() : null);
}

/** Why this host has no route to the Internet for `family` (`ENETUNREACH for 8.8.8.8`), or null when it has one. */
function askRoute(family: 4 | 6): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    const done = (why: string | null) => {
      try {
        socket.close();
      } catch {
        // closed already
      }
      resolve(why);
    };
    socket.once('error', (error: NodeJS.ErrnoException) => done(`${error.code ?? error.message} for ${PUBLIC[family]}`));
    // Port 53: any port would do, no packet is sent; connect() only looks the route up.
    socket.connect(53, PUBLIC[family], (error?: NodeJS.ErrnoException) => done(error ? `${error.code ?? error.message} for ${PUBLIC[family]}` : null));
  });
}

/**
 * Tells our uplink down from a source unreachable. With this host's network down (no route: an interface or
 * its default route gone; or the gateway not answering) every connect fails with ENETUNREACH (EHOSTUNREACH),
 * charged to every row as `connection`: the whole backlog failed after queue.maxAttempts. On a connect that could
 * not send, this host's routing is asked (a UDP connect to a public address: no packet, only the route lookup;
 * then whether the IPv4 default gateway answered ARP), one question per family at a time,
 * its verdict kept `ttlMs` as ResolverProbe's, so a chunk of failing rows asks once.
 */
export class UplinkProbe {
  private last: Partial<Record<4 | 6, { at: number; verdict: Promise<string | null> }>> = {};

  constructor(private readonly ttlMs = 5000) {}

  /** Why this host has no route to the Internet for `family`, or null when it has one. */
  check(family: 4 | 6): Promise<string | null> {
    const last = this.last[family];
    if (last && performance.now() - last.at <= this.ttlMs) return last.verdict;
    const verdict = askUplink(family);
    this.last[family] = { at: performance.now(), verdict };
    return verdict;
  }

  /** The failure to record instead of the source's `connection`, when our side is the one at fault; else null. */
  async oursInstead(error: unknown, host: string): Promise<DownloadFailure | null> {
    const failures = noRouteFailures(error);
    if (!failures) return null;
    const [v4, v6] = await Promise.all([this.check(4), failures.some((f) => f.family === 6) ? this.check(6) : Promise.resolve(null)]);
    return networkFault(failures, { 4: v4, 6: v6 }, host);
  }
}
