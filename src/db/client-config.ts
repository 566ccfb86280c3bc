import fs from 'node:fs';
import { LisError, errorMessage } from '../errors.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { ASKED_SSL_MODES, sslPreferAnswer } from './ssl-prefer.ts';

/**
 * The database URL as pg must be given it for its `sslmode` to mean what it means to libpq (psql, pg_dump, every
 * PostgreSQL tool): `require` encrypts without checking the certificate (with `sslrootcert`, it checks the CA, not
 * the host name), `verify-ca` checks the CA, `verify-full` the CA and the host name. pg 8 reads `prefer`, `require`
 * and `verify-ca` as `verify-full` unless told `uselibpqcompat=true`: the URL an operator copies from psql
 * (`?sslmode=require`) failed against a server with a self-signed or a private CA's certificate, `self-signed
 * certificate`, in every command and daemon. A URL that says `uselibpqcompat` itself, or uses pg's own
 * `sslmode=no-verify`, is left as it is; so is one without `sslmode` (no SSL, as before). An `application_name` in the
 * URL is dropped (below). `prefer` to a server that said it takes no SSL (askSslPrefer) is `disable`; `allow` is read as `prefer`.
 *
 * Throws ERR_CONFIG when a certificate file the URL names (sslrootcert, sslcert, sslkey) cannot be read: said once,
 * at start, naming the file. Pure but for that check.
 */
export function clientUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url; // pg says what is wrong with it
  }
  for (const key of ['sslrootcert', 'sslcert', 'sslkey']) {
    const file = u.searchParams.get(key);
    if (file === null) continue;
    try {
      fs.accessSync(file, fs.constants.R_OK);
    } catch (error) {
      throw new LisError('ERR_CONFIG', `the database URL ${maskUrlPasswords(url)} names ${key}=${file}, which cannot be read: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }
  // Our sessions are named by us (imagesys:<process>): pg lets a URL's application_name win over the name a
  // client is given, and the name of the upkeep's lock session says which host and process holds it, which is how
  // a run of this host whose process is gone is found and its session ended. The URL's name dropped, those work.
  const asked = url;
  if (u.searchParams.has('application_name')) {
    u.searchParams.delete('application_name');
    url = u.href;
  }
  // sslmode=prefer to a server that said it takes no SSL (ssl-prefer.ts): plain, as libpq falls back to. `allow` is
  // read as `prefer` (ssl-prefer.ts says why): pg would read it as verify-full.
  const asks = u.searchParams.get('sslmode');
  if (asks !== null && ASKED_SSL_MODES.has(asks)) {
    const read = sslPreferAnswer(asked) === 'plain' ? 'disable' : 'prefer';
    if (read !== asks) {
      u.searchParams.set('sslmode', read);
      url = u.href;
    }
  }
  // White space written as it is (a certificate's path with a space, as libpq takes it): pg reads a URL that is not
  // one by another road, which decodes the password only in part, and the server said "wrong password". As a URL
  // encodes it, pg reads it as meant.
  const given = /\s/.test(url) ? u.href : url;
  const mode = u.searchParams.get('sslmode');
  if (mode === null || mode === 'no-verify' || u.searchParams.has('uselibpqcompat')) return given;
  return `${given}${given.includes('?') ? '&' : '?'}uselibpqcompat=true`;
}
