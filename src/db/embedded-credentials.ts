import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { LisConfig } from '../config/config-schema.ts';
import { LisError } from '../errors.ts';
import { EMBEDDED_ACCESS, embeddedAccessMessage } from './embedded-folder-access.ts';

type EmbeddedSettings = LisConfig['database']['embedded'];

/** The embedded server's superuser: initdb and administration only, never the daemons. */
export const SUPERUSER = 'postgres';

/**
 * Where the passwords of the embedded server's roles are kept: next to the
 * data folder (`./var/pg.password` for `./var/pg`), readable by their owner
 * only (0600): the owner of that folder. `role`: the daemons' role (`database.embedded.user`, not a
 * superuser); `superuser`: `postgres`.
 */
export function passwordFile(settings: Pick<EmbeddedSettings, 'dataDir'>, which: 'role' | 'superuser'): string {
  const dir = path.resolve(settings.dataDir);
  return path.join(path.dirname(dir), `${path.basename(dir)}.${which === 'role' ? 'password' : 'superuser-password'}`);
}

/** The password in `file`, or null when there is none. */
export function readPassword(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim() || null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if ((error as NodeJS.ErrnoException).code === 'EACCES') {
      // Not ERR_EMBEDDED_PG: a service must exit at once, this will not heal by waiting (embedded-folder-access.ts).
      throw new LisError(EMBEDDED_ACCESS, embeddedAccessMessage(path.dirname(file), [file], file, `mode 0600, readable by its owner only`), { cause: error });
    }
    throw error;
  }
}

/** Writes `password` to `file`, mode 0600 from the first byte, replacing it whole (a crash leaves the old one or the new one). */
export function writePassword(file: string, password: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temp = `${file}.tmp-${process.pid}`;
  fs.rmSync(temp, { force: true });
  const fd = fs.openSync(temp, 'wx', 0o600);
  try {
    fs.writeSync(fd, `${password}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  // As root, in a folder of another user's (the daemons' user, e.g. imagesys): the file is theirs, for them to read.
  if (process.getuid?.() === 0) {
    const { uid, gid } = fs.statSync(path.dirname(file));
    if (uid !== 0) fs.chownSync(temp, uid, gid);
  }
  fs.renameSync(temp, file);
}

/** 32 random characters of the URL-safe alphabet: nothing to escape in a URL or a shell. */
export function randomPassword(): string {
  return crypto.randomBytes(24).toString('base64url');
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677,
 * PostgreSQL's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`).
 * Sent instead of the password in CREATE/ALTER ROLE, so the password never
 * appears in a statement the server could log.
 */
export function scramVerifier(password: string, salt = crypto.randomBytes(16), iterations = 4096): string {
  const salted = crypto.pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const hmac = (key: Buffer, text: string) => crypto.createHmac('sha256', key).update(text).digest();
  const storedKey = crypto.createHash('sha256').update(hmac(salted, 'Client Key')).digest();
  const serverKey = hmac(salted, 'Server Key');
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
