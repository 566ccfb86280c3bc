/**
 * Any URL's password in a text shown as `***`: `http://user:secret@host/x.jpg` -> `http://user:***@host/x.jpg`.
 * Feed URLs may carry userinfo (basic auth to a source's image server); the URL itself stays the row's identity
 * (live_images.image_url), but its password must reach no log line, no recorded reason (shown by lis, the status
 * page and alerts), nothing an operator reads. Every URL in the text, whatever its scheme; a user with no password
 * is left as it is (it is no secret). Pure.
 */
export function maskUrlPasswords(text: string): string {
  // The userinfo is what lies between `//` and the authority's `@` (a password's own `@`, `/` or `?` are
  // percent-encoded in a URL, so it holds none of them); the user name ends at its first `:`.
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*):[^\s/?#@]*@/gi, '$1:***@');
}
