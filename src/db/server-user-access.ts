import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LisError } from '../errors.ts';

/** PostgreSQL refuses to run as root: as root the embedded server runs as this user (created if missing). */
export const SERVER_USER = 'postgres';

/** Whether `user` can search (traverse into) `dir`, asked of the system itself (modes, ACLs, groups). */
function canTraverse(user: string, dir: string): boolean {
  try {
    execFileSync('su', [user, '-s', '/bin/sh', '-c', 'test -x "$0"', dir], { stdio: 'ignore' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new LisError('ERR_EMBEDDED_PG', 'su is missing: cannot check what the postgres user can reach');
    return false;
  }
}

/**
 * As root, makes sure the server's user can reach `targets` (its binaries'
 * folder, the data folder's parent): a checkout in a private folder (/root,
 * mode 700) is common. Each folder on the way that it cannot pass gets an
 * ACL entry granting it search (`setfacl -m u:postgres:x`): it may pass
 * through, not list or read. Nothing else changes. Returns the folders
 * opened, for the caller to say so.
 */
export function grantServerUserTraverse(targets: readonly string[]): string[] {
  if (process.getuid?.() !== 0) return [];
  const opened: string[] = [];
  for (const target of targets) {
    const full = path.resolve(target);
    if (canTraverse(SERVER_USER, full)) continue;
    const parts = full.split(path.sep).filter(Boolean);
    for (let i = 0; i <= parts.length; i++) {
      const dir = path.sep + parts.slice(0, i).join(path.sep);
      if (!fs.existsSync(dir)) break; // made later, by us, open to all (mode 755)
      if (canTraverse(SERVER_USER, dir)) continue;
      try {
        execFileSync('setfacl', ['-m', `u:${SERVER_USER}:x`, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (error) {
        const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
        throw new LisError(
          'ERR_EMBEDDED_PG',
          `the embedded PostgreSQL runs as the "${SERVER_USER}" user (it refuses root), which cannot reach ${full}: ${dir} is closed to it, and ` +
            (missing
              ? 'setfacl is not installed (apt-get install acl)'
              : `setfacl could not open it (${String((error as { stderr?: Buffer }).stderr ?? error).trim()})`) +
            `; make the folders above it traversable (chmod o+x ${dir}), move the checkout, or set LIS_DATABASE_URL to a server of your own`,
        );
      }
      opened.push(dir);
    }
  }
  return opened;
}

/** The uid and gid the server runs as: ours unless we are root; as root `postgres`'s, created (a system user, no login) if missing. */
export function serverIds(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, SERVER_USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    let groupExists = true;
    try {
      execFileSync('getent', ['group', SERVER_USER], { stdio: 'ignore' });
    } catch {
      groupExists = false;
    }
    execFileSync(
      'useradd',
      ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', ...(groupExists ? ['-g', SERVER_USER] : ['--user-group']), SERVER_USER],
      { stdio: 'ignore' },
    );
    return { uid: id('-u'), gid: id('-g') };
  }
}
