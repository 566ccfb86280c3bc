import net from 'node:net';

/**
 * `sslmode=prefer` as libpq means it: SSL when the server offers it, else a plain connection. pg has no fallback:
 * it asks for SSL and, told no, fails (`The server does not support SSL connections`), so a URL that psql takes
 * (prefer is libpq's default, and some hosts' connection strings name it) failed against a server with SSL off, in
 * every command and daemon. The server is asked once per process, before its first connection (databaseUrl), with
 * the protocol's SSLRequest; clientUrl then gives pg the URL with `sslmode=disable` where the server said no.
 *
 * `sslmode=allow` is asked about too: pg read it as `verify-full`, so it failed against a server with SSL off and
 * against one whose certificate no CA of the machine's signed. libpq tries a plain connection first and SSL when the
 * server refuses that; a refusal comes only after the login, which pg cannot take back and try again, so `allow` is
 * read as `prefer` (clientUrl): the same connection as libpq's wherever the server takes no SSL or only SSL, and an
 * encrypted one (never a checked one, as libpq's) where it takes both.
 */
const answers = new Map<string, 'ssl' | 'plain'>();

/** The protocol's SSLRequest: its length (8) and the code 80877103. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/** What the server of `url` said to an SSLRequest (asked at most once per URL and process), or null: not asked. */
export function sslPreferAnswer(url: string): 'ssl' | 'plain' | null {
  return answers.get(url) ?? null;
}

/** The modes whose connection depends on the server's answer to an SSLRequest. */
export const ASKED_SSL_MODES = new Set(['prefer', 'allow']);

/**
 * For a URL with `sslmode=prefer` or `allow` (one host): asks its server whether it takes SSL, within `timeoutMs`. A server
 * that cannot be reached, or answers neither yes nor no, is left unasked: the connection's own error says what is
 * wrong. Never rejects.
 */
export async function askSslPrefer(url: string, timeoutMs: number): Promise<void> {
  if (answers.has(url)) return;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return;
  }
  if (!ASKED_SSL_MODES.has(u.searchParams.get('sslmode') ?? '') || !u.hostname || u.hostname.includes(',')) return;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || 5432);
  const answer = await new Promise<'ssl' | 'plain' | null>((resolve) => {
    const socket = net.connect({ host, port });
    const done = (value: 'ssl' | 'plain' | null) => {
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(timeoutMs, () => done(null));
    socket.once('error', () => done(null));
    socket.once('connect', () => socket.write(SSL_REQUEST));
    socket.once('data', (chunk: Buffer) => done(chunk[0] === 0x53 ? 'ssl' : chunk[0] === 0x4e ? 'plain' : null));
  });
  if (answer) answers.set(url, answer);
}
