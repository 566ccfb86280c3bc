import net from 'node:net';

/** True for an address only this machine can reach (127.0.0.0/8, ::1, `localhost`). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  return h === '::1' || h === '::ffff:127.0.0.1';
}

/** The warning to log when a server binds beyond loopback; null when it does not. */
export function exposedBindWarning(what: string, host: string): string | null {
  if (isLoopbackHost(host)) return null;
  return `${what} listens on ${host}, beyond this machine: anyone who can reach it reads the queue's figures (there is no login); put it behind a firewall or an authenticating proxy, or bind it to 127.0.0.1`;
}
