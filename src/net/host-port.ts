import net from 'node:net';

/** A TCP endpoint named in the config: an IP literal or a host name, and a port. */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * Pure: `192.0.2.10:443`, `[2001:db8::1]:443` or `probe.example.net:80` -> host and port. Throws a TypeError on
 * anything else (no port, a bare IPv6 address without brackets, a port out of range).
 */
export function parseHostPort(text: string): HostPort {
  const bad = () => new TypeError(`not a host:port such as 192.0.2.10:443, [2001:db8::1]:443 or probe.example.net:80: ${JSON.stringify(text)}`);
  const t = text.trim();
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(t) ?? /^([^:[\]\s/]+):(\d{1,5})$/.exec(t);
  if (!match) throw bad();
  const [, host, portText] = match;
  const port = Number(portText);
  if (port < 1 || port > 65535) throw bad();
  // Brackets are for IPv6 only; a name must look like one (letters, digits, dots and hyphens).
  if (t.startsWith('[') ? net.isIPv6(host) === false : !net.isIPv4(host) && !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i.test(host)) throw bad();
  return { host: host.toLowerCase(), port };
}
