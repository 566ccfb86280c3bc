import net from 'node:net';

/**
 * Which peer addresses the downloader may connect to. Pure: no I/O.
 *
 * URLs come from third-party feeds, so a URL (or a redirect, or a DNS answer)
 * naming an address inside our own network must not make us fetch from it:
 * loopback, private, link-local (cloud metadata at 169.254.169.254), CGNAT,
 * multicast, reserved, and IPv4-mapped IPv6 (which would reach IPv4 loopback).
 * The config can allow given ranges (tests and the demo allow 127.0.0.1/32).
 */

interface Range {
  family: 4 | 6;
  base: bigint;
  prefix: number;
  /** For the failure reason: `private`, `loopback`... */
  label: string;
}

const REFUSED: ReadonlyArray<[string, string]> = [
  ['0.0.0.0/8', 'this network'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'CGNAT'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'reserved'],
  ['192.0.2.0/24', 'documentation'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['::ffff:0:0/96', 'IPv4-mapped'],
  ['::/96', 'IPv4-compatible'],
  ['fc00::/7', 'private'],
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'site-local'],
  ['ff00::/8', 'multicast'],
  ['2001:db8::/32', 'documentation'],
];

/** `10.1.2.3` -> 32-bit value; `::ffff:1.2.3.4`, `fe80::1%eth0` -> 128-bit value. Null when not an IP. */
export function parseIp(text: string): { family: 4 | 6; value: bigint } | null {
  const address = text.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = net.isIP(address);
  if (family === 4) {
    return { family: 4, value: address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n) };
  }
  if (family !== 6) return null;
  let text6 = address.toLowerCase();
  // A dotted IPv4 tail (`::ffff:127.0.0.1`) is two groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text6);
  if (dotted) {
    const v4 = parseIp(dotted[1])!.value;
    text6 = text6.slice(0, dotted.index) + `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text6.includes('::') ? text6.split('::') : [text6, null];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = tail === null ? headGroups : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return { family: 6, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g || '0', 16)), 0n) };
}

/** `10.0.0.0/8`, `127.0.0.1` (a single address), `fc00::/7`; throws on anything else. */
export function parseCidr(cidr: string, label = 'allowed'): Range {
  const [addressText, prefixText, extra] = cidr.trim().split('/');
  const ip = parseIp(addressText);
  const bits = ip?.family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (!ip || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > bits || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
    throw new TypeError(`not an address range (CIDR) such as 127.0.0.1/32 or fc00::/7: ${JSON.stringify(cidr)}`);
  }
  const shift = BigInt(bits - prefix);
  return { family: ip.family, base: (ip.value >> shift) << shift, prefix, label };
}

function contains(range: Range, ip: { family: 4 | 6; value: bigint }): boolean {
  if (range.family !== ip.family) return false;
  const shift = BigInt((ip.family === 4 ? 32 : 128) - range.prefix);
  return ip.value >> shift === range.base >> shift;
}

const REFUSED_RANGES = REFUSED.map(([cidr, label]) => parseCidr(cidr, label));

export interface AddressPolicy {
  /** Null when the address may be connected to; else why not (`loopback`, `private`...). */
  refusal(address: string): string | null;
}

/**
 * The policy for a config's `download.allowAddresses`. An allowed range wins
 * over a refused one, but only within its own family: allowing 127.0.0.1/32
 * does not allow `::ffff:127.0.0.1`. Anything that is not an IP is refused.
 */
export function addressPolicy(allowAddresses: readonly string[]): AddressPolicy {
  const allowed = allowAddresses.map((cidr) => parseCidr(cidr));
  return {
    refusal(address) {
      const ip = parseIp(address);
      if (!ip) return 'not an IP address';
      if (allowed.some((range) => contains(range, ip))) return null;
      return REFUSED_RANGES.find((range) => contains(range, ip))?.label ?? null;
    },
  };
}
