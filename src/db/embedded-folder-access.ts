import fs from 'node:fs';
import os from 'node:os';
import { LisError } from '../errors.ts';

/**
 * ERR_EMBEDDED_ACCESS: this process's user may not use the embedded PostgreSQL's own files (its folder
 * `./var`, where the start lock and the password files are, or the data folder), e.g. a daemon run as
 * `imagesys` or `nobody` next to a `./var` that root set up. Unlike an outage it will not heal by waiting:
 * a service exits at once (openDatabaseWaiting) instead of retrying for 10 minutes as if the server were down.
 */
export const EMBEDDED_ACCESS = 'ERR_EMBEDDED_ACCESS';

/** `nobody (uid 65534)`: this process's user, by name when the system has one for it. */
export function currentUser(): string {
  const uid = process.getuid?.() ?? -1;
  try {
    return `${os.userInfo().username} (uid ${uid})`;
  } catch {
    return `uid ${uid}`;
  }
}

/** `root (uid 0)`: the owner of `file`, by name when /etc/passwd has one for it. */
export function ownerOf(file: string): string | null {
  let uid: number;
  try {
    uid = fs.statSync(file).uid;
  } catch {
    return null;
  }
  try {
    const line = fs
      .readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(uid));
    if (line) return `${line.split(':')[0]} (uid ${uid})`;
  } catch {
    // no passwd file: the uid alone
  }
  return `uid ${uid}`;
}

/**
 * The line an operator reads for a permission refused on `refused`, a file of the embedded server's: its folder
 * (`./var`), who we are, whose it is, and what to do. `files`: the folder's password files, to give away with it.
 */
export function embeddedAccessMessage(folder: string, files: readonly string[], refused: string, detail: string): string {
  const owner = ownerOf(folder);
  const me = currentUser();
  const myName = me.startsWith('uid ') ? String(process.getuid?.()) : me.split(' ')[0];
  const give = [folder, ...files.filter((f) => fs.existsSync(f))].join(' ');
  return (
    `cannot use the embedded PostgreSQL's folder ${folder} as ${me}${owner ? `; it belongs to ${owner}` : ''} (${refused}: ${detail}). ` +
    `Run this as the folder's owner${owner ? `, ${owner.split(' ')[0]},` : ''} who set it up (\`npx lis db start\`); or give that folder and its password files to ${myName} ` +
    `(\`chown ${myName} ${give}\`); or use a server of your own (LIS_DATABASE_URL or database.url)`
  );
}

/** ERR_EMBEDDED_ACCESS for a permission error (EACCES, EPERM) on a file of the embedded server's; null for any other error. */
export function embeddedAccessError(folder: string, files: readonly string[], error: unknown): LisError | null {
  if (error instanceof LisError) return error.code === EMBEDDED_ACCESS ? error : null;
  const e = error as NodeJS.ErrnoException;
  if ((e?.code !== 'EACCES' && e?.code !== 'EPERM') || typeof e.path !== 'string') return null;
  return new LisError(EMBEDDED_ACCESS, embeddedAccessMessage(folder, files, e.path, `${e.code}, ${e.syscall ?? 'access'} refused`), { cause: error });
}
