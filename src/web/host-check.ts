import net from 'node:net';

/**
 * Which `Host` headers `lis web` answers: DNS rebinding makes a browser send
 * a page of an attacker's domain (resolving to 127.0.0.1) to our port, with
 * that domain in `Host`. Only names we know are answered: `localhost` (and
 * `*.localhost`), the machine's name (`host` in the config), the names in
 * `metrics.webHostNames`, and any IP address (a page can only be of an IP
 * origin when the user typed that address). Pure.
 */
export function hostHeaderCheck(names: readonly string[]): (header: string | undefined) => boolean {
  const known = new Set(names.map((n) => n.toLowerCase().replace(/\.$/, '')));
  return (header) => {
    if (!header) return false;
    const name = hostName(header);
    if (name === null) return false;
    if (net.isIP(name) !== 0) return true;
    return name === 'localhost' || name.endsWith('.localhost') || known.has(name);
  };
}

/** `example.com:8470` -> `example.com`, `[::1]:8470` -> `::1`; null when it is not a host[:port]. */
function hostName(header: string): string | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s/@]+))(?::\d{1,5})?$/.exec(header.trim());
  if (!m) return null;
  return (m[1] ?? m[2]).toLowerCase().replace(/\.$/, '');
}
