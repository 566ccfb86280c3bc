/**
 * Any URL's password in a text shown as `***`: `http://user:secret@host/x.jpg` -> `http://user:***@host/x.jpg`.
 * Feed URLs may carry userinfo (basic auth to a source's image server); the URL itself stays the row's identity
 * (live_images.image_url), but its password must reach no log line, no recorded reason (shown by lis, the status
 * page and alerts), nothing an operator reads. Every URL in the text, whatever its scheme; a user with no password
 * is left as it is (it is no secret). The one rule for every URL we show, the database's and the proxy's too
 * (`lis config`, `lis db status`, errors naming a server). Pure.
 *
 * The userinfo ends at the authority's last `@` (as URL parsers, pg's and got's, read it): a user name that is a
 * mail address (`http://me@corp.com:secret@host/`, Azure's `user@server` database logins) or a password with an
 * `@` left unencoded must not end it early, which showed the whole password or its end. A password given as a
 * query parameter (`postgres://db/imagesys?password=secret`, which pg reads; `sslpassword`) is masked as well.
 */
export function maskUrlPasswords(text: string): string {
  // The authority runs up to the first `/`, `?`, `#` or space; the user name ends at its first `:`.
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/?#]*):[^\s/?#]*@/gi, '$1:***@').replace(/([?&][^\s=&#?]*password=)[^\s&#]*/gi, '$1***');
}
