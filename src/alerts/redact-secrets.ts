import net from 'node:net';

/**
 * Removes secrets (a webhook URL; its path, which often is the token; its host
 * name, which is the token for services that give each hook a host of its own,
 * as in `getaddrinfo ENOTFOUND <token>.m.example`; an SMTP password) from text
 * bound for a log. An IP address or localhost names nobody and is kept. Pure.
 */
export function redactSecrets(text: string, secrets: Array<string | null | undefined>): string {
  const all = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    all.add(secret);
    try {
      const url = new URL(secret);
      if (url.pathname.length > 1) all.add(url.pathname + url.search);
      if (url.password) all.add(url.password);
      const host = url.hostname.replace(/^\[|\]$/g, '');
      if (host && net.isIP(host) === 0 && host !== 'localhost') all.add(url.hostname);
    } catch {
      // Not a URL: the whole string is the secret.
    }
  }
  let out = text;
  // Longest first, so that a URL is replaced whole rather than around its path.
  for (const secret of [...all].sort((a, b) => b.length - a.length)) out = out.split(secret).join('[redacted]');
  return out;
}
