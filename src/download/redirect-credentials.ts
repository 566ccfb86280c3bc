/**
 * Whether a redirect may carry the image URL's credentials (`https://user:pass@host/...`) on to `to`. got drops
 * them when the host or the port changes, but `https://host/` and `http://host/` have the same port as a URL
 * says it (none), so a source that sent us from https to http on its own host had the password sent in clear
 * text. As curl does, they go on only to the same scheme too. Pure.
 */
export function redirectKeepsCredentials(from: URL, to: URL): boolean {
  return from.protocol === to.protocol && from.hostname === to.hostname && from.port === to.port;
}

/** The part of got's options a redirect's credentials live in (its Options class, in a beforeRedirect hook). */
export interface RedirectOptions {
  url?: string | URL;
  username: string;
  password: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * For got's beforeRedirect hook: the credentials taken off a redirect that may not carry them (a Basic
 * Authorization header too, which got sends from them). The source then answers the new URL as it answers anyone
 * (a 401 is the source's, as for any URL of it).
 */
export function dropCredentialsUnlessKept(options: RedirectOptions, from: string): void {
  if (options.url === undefined) return;
  const to = options.url instanceof URL ? options.url : new URL(options.url);
  if (redirectKeepsCredentials(new URL(from), to)) return;
  options.username = '';
  options.password = '';
  delete options.headers.authorization;
}
