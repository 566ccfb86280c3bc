import http from 'node:http';
import https from 'node:https';
import got, { type Got } from 'got';
import { HttpProxyAgent, HttpsProxyAgent } from 'hpagent';
import type { DownloadConfig } from '../config/download-config.ts';
import { addressPolicy, parseIp, urlPort, type AddressPolicy } from '../net/address-policy.ts';
import { DownloadError, refusedAddress } from './download-error.ts';
import { dropCredentialsUnlessKept } from './redirect-credentials.ts';
import { ResolverProbe } from './resolver-probe.ts';
import { checkHostBeforeProxy, policeAgent } from './safe-lookup.ts';
import { UplinkProbe } from './uplink-probe.ts';
import { WayOutProbe } from './way-out-probe.ts';
import { parseHostPort } from '../net/host-port.ts';

/** The longest an outside reference is given to answer a TCP connect (less when download.timeouts.connectSeconds is). */
const WAY_OUT_BOUND_MS = 3000;

/** Idle keep-alive sockets are closed after this long (servers often close theirs after 5-60 s). */
const FREE_SOCKET_MS = 15_000;

export interface DownloadClient {
  got: Got;
  /** Whether requests go through `download.proxy`. */
  proxied: boolean;
  /** `download.proxy`, when requests go through it. */
  proxy: URL | null;
  /** Whether our own resolver answers: a DNS failure of every host is ours, not theirs. */
  resolver: ResolverProbe;
  /** Whether this host has a route out: a connect that cannot send to any host is ours, not the source's. */
  uplink: UplinkProbe;
  /** Whether anything beyond our gateway answers (hosts reached lately, download.uplinkProbeTargets): a timeout of every host is ours. */
  wayOut: WayOutProbe;
  destroy(): void;
}

/**
 * Refuses a URL before any socket is opened: a scheme other than http(s), and
 * an IP-literal host the policy refuses (Node skips the DNS lookup for those,
 * so the safe lookup never sees them). Runs on the first request and on
 * every redirect.
 */
export function checkTargetUrl(url: URL, policy: AddressPolicy): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DownloadError('bad_url', `bad URL: only http and https are fetched, not ${url.protocol.replace(/:$/, '')}`, { retryable: false });
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (parseIp(host)) {
    const why = policy.refusal(host, urlPort(url));
    if (why) throw refusedAddress(host, why);
  }
}

/**
 * The got instance every download uses: keep-alive agents whose DNS lookup
 * drops refused addresses (or a proxy), the User-Agent, per-phase timeouts,
 * no retries (the queue retries, with backoff), a redirect limit, and the
 * address checks on every redirect. Bodies are decompressed; status codes
 * are the caller's to judge.
 */
export function createDownloadClient(config: DownloadConfig, options: { noproxy?: boolean } = {}): DownloadClient {
  const policy = addressPolicy(config.allowAddresses);
  const proxy = options.noproxy ? null : config.proxy;
  const agentOptions = {
    keepAlive: true,
    // The host limiter bounds downloads; the agent must also fit the slow ones it hands on (up to twice
    // concurrency, see HostLimiter.demote), or drip-feed URLs hold every socket and the rest queue here.
    maxSockets: config.concurrency * 3,
    maxFreeSockets: config.perHostConcurrency,
    scheduling: 'lifo' as const,
    timeout: FREE_SOCKET_MS,
  };
  const agent = proxy
    ? { http: new HttpProxyAgent({ ...agentOptions, proxy }), https: new HttpsProxyAgent({ ...agentOptions, proxy }) }
    : { http: policeAgent(new http.Agent(agentOptions), policy), https: policeAgent(new https.Agent(agentOptions), policy) };
  const connect = config.timeouts.connectSeconds * 1000;
  const firstByte = config.timeouts.firstByteSeconds * 1000;

  const checkTarget = async (target: { url?: string | URL }) => {
    const url = target.url instanceof URL ? target.url : new URL(String(target.url));
    checkTargetUrl(url, policy);
    if (proxy && !parseIp(url.hostname.replace(/^\[|\]$/g, ''))) await checkHostBeforeProxy(policy, url.hostname, urlPort(url));
  };

  const instance = got.extend({
    agent,
    http2: false,
    // The idle timeout (a body that stalls) is a little longer than the first-byte one, so that a
    // server slow to answer is reported as such rather than as an idle socket.
    timeout: { lookup: connect, connect, secureConnect: connect, send: connect, response: firstByte, socket: firstByte + 1000 },
    retry: { limit: 0 },
    maxRedirects: config.maxRedirects,
    followRedirect: true,
    throwHttpErrors: false,
    decompress: true,
    strictContentLength: true,
    cache: false,
    headers: { 'user-agent': config.userAgent, accept: 'image/avif,image/webp,image/*;q=0.9,*/*;q=0.5' },
    hooks: {
      beforeRequest: [async (o) => void (await checkTarget(o))],
      beforeRedirect: [
        async (o, response) => {
          dropCredentialsUnlessKept(o, response.url);
          await checkTarget(o);
        },
      ],
    },
  });

  return {
    got: instance,
    proxied: Boolean(proxy),
    proxy: proxy ? new URL(proxy) : null,
    resolver: new ResolverProbe(),
    uplink: new UplinkProbe(),
    wayOut: new WayOutProbe(config.uplinkProbeTargets.map(parseHostPort), Math.min(connect, WAY_OUT_BOUND_MS)),
    destroy() {
      agent.http.destroy();
      agent.https.destroy();
    },
  };
}
