import * as z from 'zod';
import { parseAllowEntry } from '../net/address-policy.ts';
import { parseHostPort } from '../net/host-port.ts';

const positiveInt = z.number().int().positive();
const seconds = z.number().positive();

/**
 * `download`: how lis_downloadd fetches originals. Every limit has a default
 * that is safe against a hostile or broken server.
 */
export const downloadConfigSchema = z.strictObject({
  /** Downloads in flight at once per daemon, over all hosts. */
  concurrency: positiveInt.max(1000).default(32),
  /** Downloads in flight at once to one host name, so that one slow source neither starves the others nor gets hammered. */
  perHostConcurrency: positiveInt.max(1000).default(4),
  /** Least time between the starts of two requests to one host (0: none). */
  perHostDelaySeconds: z.number().min(0).max(3600).default(0),
  /** Sent on every request: say who we are and how to reach us. */
  userAgent: z.string().min(1).max(500).default('ImageSys/0.1 (listing photo downloader; set download.userAgent to name a contact)'),
  /** An http:// or https:// proxy every request goes through (CONNECT); null: direct. `--noproxy` ignores it. */
  proxy: z
    .string()
    .regex(/^https?:\/\/[^\s]+$/, 'an http:// or https:// proxy URL')
    .nullable()
    .default(null),
  timeouts: z
    .strictObject({
      /** DNS lookup, TCP connect and TLS handshake, each. */
      connectSeconds: seconds.default(10),
      /** From the request sent to the response headers (the first byte). */
      firstByteSeconds: seconds.default(20),
      /** The whole download, redirects included: a server dripping bytes is cut off here. */
      totalSeconds: seconds.default(60),
    })
    .prefault({}),
  /** Largest original kept, in bytes, counted while streaming (after gzip is undone), whatever Content-Length says. */
  maxBytes: positiveInt.max(2 ** 31 - 1).default(25 * 1024 * 1024),
  /** Redirects followed per download; more is a failure (`redirect_loop`). */
  maxRedirects: z.number().int().min(0).max(20).default(5),
  /**
   * Addresses allowed although they are loopback, private, link-local,
   * CGNAT, multicast or reserved, with the ports they open: `127.0.0.1`,
   * `10.0.0.0/8` (ports 80 and 443 only), `10.0.0.5:8080`, `127.0.0.1:*`
   * (every port), `[::1]:8080`, `fc00::/7`. Default none.
   */
  allowAddresses: z
    .array(
      z.string().refine((cidr) => {
        try {
          parseAllowEntry(cidr);
          return true;
        } catch {
          return false;
        }
      }, 'an address or range with an optional port, such as 127.0.0.1, 10.0.0.0/8:8080, 127.0.0.1:* or [::1]:8080'),
    )
    .default([]),
  /**
   * Hosts (`192.0.2.10:443`, `[2001:db8::1]:443`, `probe.example.net:80`) that a TCP connect should reach
   * whenever our way to the Internet works: with the hosts downloads reached lately, the outside references
   * a connect timeout is judged against (WayOutProbe). Default none: only the hosts reached lately.
   */
  uplinkProbeTargets: z
    .array(
      z.string().refine((text) => {
        try {
          parseHostPort(text);
          return true;
        } catch {
          return false;
        }
      }, 'a host and port such as 192.0.2.10:443, [2001:db8::1]:443 or probe.example.net:80'),
    )
    .max(20)
    .default([]),
  /** On SIGTERM, in-flight downloads get this long to finish; the rest are given back untouched. */
  stopGraceSeconds: z.number().min(0).max(600).default(10),
});

export type DownloadConfig = z.infer<typeof downloadConfigSchema>;
