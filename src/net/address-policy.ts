import net from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * Which peers (address and port) the downloader may connect to. Pure: no I/O.
 *
 * URLs come from third-party feeds, so a URL (or a redirect, or a DNS answer)
 * naming an address inside our own network must not make us fetch from it.
 * Every address that ipaddr.js's range tables do not call plain `unicast` is
 * refused: loopback, private, link-local (cloud metadata at 169.254.169.254),
 * CGNAT, multicast, reserved, documentation... An IPv6 address that carries
 * an IPv4 address (IPv4-mapped, -compatible, -translated, NAT64, 6to4,
 * Teredo, ISATAP) is judged by that IPv4 address too, since the packets end
 * up there: `64:ff9b::7f00:1` is 127.0.0.1.
 *
 * The config's allow-list (`download.allowAddresses`) lets given refused
 * addresses through, on given ports: `127.0.0.1:8080`, `10.0.0.0/8:*`,
 * `[::1]:8080`, `fc00::/7`. An entry without a port allows the web ports
 * (80 and 443) only, so allowing an image server does not open its
 * PostgreSQL or SSH port to whatever a feed names.
 */

type Ip = ipaddr.IPv4 | ipaddr.IPv6;

/** The ports an allow-list entry without a port covers. */
export const WEB_PORTS: readonly number[] = [80, 443];

/** One allow-list entry: a range and the ports it opens. */
export interface AllowEntry {
  text: string;
  range: [Ip, number];
  /** `any`, or the ports allowed. */
  ports: 'any' | readonly number[];
}

/** ipaddr.js's range names as an operator reads them. */
const LABELS: Record<string, string> = {
  unspecified: 'this network',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  carrierGradeNat: 'CGNAT',
  private: 'private',
  reserved: 'reserved',
  uniqueLocal: 'private',
  deprecatedSiteLocal: 'site-local',
};

/**
 * `10.1.2.3`, `::ffff:1.2.3.4`, `[::1]`, `fe80::1%eth0` -> the address; null
 * when not an IP in a form a socket would accept (`127.1` is not).
 */
export function parseIp(text: string): Ip | null {
  const address = text.replace(/^\[|\]$/g, '');
  const family = net.isIP(address);
  if (family === 0) return null;
  if (family === 4) return ipaddr.IPv4.parse(address);
  // Through the URL parser first: ipaddr.js reads every dotted tail as IPv4-mapped (`::127.0.0.1` is
  // IPv4-compatible). The zone (`%eth0`) only matters for link-local addresses, which are refused anyway.
  return ipaddr.IPv6.parse(new URL(`http://[${address.replace(/%.*$/, '')}]/`).hostname.slice(1, -1));
}

/**
 * Pure: an allow-list entry. `127.0.0.1`, `10.0.0.0/8` (ports 80 and 443),
 * `127.0.0.1:8080`, `10.0.0.0/8:*`, `::1`, `fc00::/7`, `[::1]:8080`,
 * `[fc00::/7]:*`. Throws a TypeError on anything else.
 */
export function parseAllowEntry(text: string): AllowEntry {
  const bad = () => new TypeError(`not an allow-list entry such as 127.0.0.1, 10.0.0.0/8:8080, [::1]:* or fc00::/7: ${JSON.stringify(text)}`);
  const t = text.trim();
  let rangeText = t;
  let portText: string | null = null;
  const bracketed = /^\[([^\]]+)\](?::(.+))?$/.exec(t);
  if (bracketed) [rangeText, portText] = [bracketed[1], bracketed[2] ?? null];
  // IPv4 with a port has one colon; a bare IPv6 address always has two or more.
  else if (t.split(':').length === 2) [rangeText, portText] = t.split(':') as [string, string];
  const [addressText, prefixText, extra] = rangeText.split('/');
  const ip = parseIp(addressText);
  if (!ip || extra !== undefined || (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText))) throw bad();
  const bits = ip.kind() === 'ipv4' ? 32 : 128;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (prefix > bits) throw bad();
  let ports: AllowEntry['ports'] = WEB_PORTS;
  if (portText !== null) {
    if (portText === '*') ports = 'any';
    else if (/^\d{1,5}$/.test(portText) && Number(portText) >= 1 && Number(portText) <= 65535) ports = [Number(portText)];
    else throw bad();
  }
  return { text: t, range: [ip, prefix], ports };
}

function inRange(ip: Ip, [base, prefix]: [Ip, number]): boolean {
  return ip.kind() === base.kind() && (ip as ipaddr.IPv4).match(base, prefix);
}

const v4 = (bytes: number[]) => new ipaddr.IPv4(bytes);
const NAT64_LOCAL = ipaddr.parseCIDR('64:ff9b:1::/48') as [ipaddr.IPv6, number];

/**
 * The IPv4 addresses an IPv6 address leads to, with the form's name; `always`
 * when the form has no business in a DNS answer or URL and is refused
 * whatever it carries.
 */
function embeddedIpv4(ip: ipaddr.IPv6): { form: string; always: boolean; addresses: ipaddr.IPv4[] } | null {
  const b = ip.toByteArray();
  const range = ip.range();
  if (range === 'ipv4Mapped') return { form: 'IPv4-mapped', always: true, addresses: [ip.toIPv4Address()] };
  if (range === 'rfc6145') return { form: 'IPv4-translated', always: true, addresses: [v4(b.slice(12))] };
  if (range === 'rfc6052') {
    // The well-known 64:ff9b::/96 puts the IPv4 address last; the local-use 64:ff9b:1::/48 may be
    // cut at /48, /56, /64 or /96 (RFC 6052 2.2, skipping the u octet): every reading is judged.
    const addresses = ip.match(NAT64_LOCAL)
      ? [v4(b.slice(12)), v4(b.slice(9, 13)), v4([b[7], b[9], b[10], b[11]]), v4([b[6], b[7], b[9], b[10]])]
      : [v4(b.slice(12))];
    return { form: 'NAT64', always: false, addresses };
  }
  if (range === '6to4') return { form: '6to4', always: false, addresses: [v4(b.slice(2, 6))] };
  // Teredo: the server's address as is, the client's XOR-ed with ones (RFC 4380 4).
  if (range === 'teredo') return { form: 'Teredo', always: false, addresses: [v4(b.slice(4, 8)), v4(b.slice(12).map((x) => x ^ 0xff))] };
  if (range === 'unicast' && b.slice(0, 12).every((x) => x === 0)) return { form: 'IPv4-compatible', always: true, addresses: [v4(b.slice(12))] };
  // ISATAP: any prefix, interface identifier 0000:5efe or 0200:5efe followed by the IPv4 address.
  if ((b[8] === 0 || b[8] === 2) && b[9] === 0 && b[10] === 0x5e && b[11] === 0xfe) return { form: 'ISATAP', always: false, addresses: [v4(b.slice(12))] };
  return null;
}

/** Why an address is refused before any allow-list is applied; null when it is plain unicast. */
export function refusedRange(ip: Ip): string | null {
  if (ip.kind() === 'ipv6') {
    const embedded = embeddedIpv4(ip as ipaddr.IPv6);
    if (embedded) {
      if (embedded.always) return embedded.form;
      for (const address of embedded.addresses) {
        const why = refusedRange(address);
        if (why) return `${embedded.form} of ${why} ${address.toString()}`;
      }
      return null;
    }
  }
  const range = ip.range();
  return range === 'unicast' ? null : (LABELS[range] ?? range);
}

export interface AddressPolicy {
  /**
   * Null when `address` may be connected to on `port`; else why not
   * (`loopback`, `NAT64 of private 10.0.0.1`...). With `port` null (a DNS
   * lookup, which is not told the port) an address is let through when an
   * entry allows it on some port: the port is judged again once known.
   */
  refusal(address: string, port: number | null): string | null;
}

/**
 * The policy for a config's `download.allowAddresses`. An allowed entry wins
 * over a refused range, but only within its own family: allowing 127.0.0.1
 * does not allow `::ffff:127.0.0.1`. Anything that is not an IP is refused.
 */
export function addressPolicy(allowAddresses: readonly string[]): AddressPolicy {
  const entries = allowAddresses.map(parseAllowEntry);
  return {
    refusal(address, port) {
      const ip = parseIp(address);
      if (!ip) return 'not an IP address';
      const why = refusedRange(ip);
      if (!why) return null;
      const covering = entries.filter((e) => inRange(ip, e.range));
      if (covering.some((e) => port === null || e.ports === 'any' || e.ports.includes(port))) return null;
      if (covering.length === 0) return why;
      return `${why}; port ${port} is not allowed by ${covering.map((e) => e.text).join(', ')} (an entry without a port allows ${WEB_PORTS.join(' and ')} only)`;
    },
  };
}

/** The port a URL connects to. */
export function urlPort(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
}
