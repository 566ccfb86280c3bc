import fs from 'node:fs';
import path from 'node:path';
import { maskUrlPasswords } from '../util/mask-url-password.ts';

/** Keys whose string values are secrets themselves (not a file that holds one: push.daemonPasswordFile). */
const SECRET_KEY = /(password|secret[a-z]*|webhookurl)$/i;

/** Pure: the paths of the keys of a config file's JSON that hold a secret (a password, a secret key, a webhook, a URL with a password). */
export function secretKeysIn(raw: unknown, at = ''): string[] {
  if (typeof raw === 'string') {
    const key = at.slice(at.lastIndexOf('.') + 1);
    return raw !== '' && (SECRET_KEY.test(key) || maskUrlPasswords(raw) !== raw) ? [at] : [];
  }
  if (Array.isArray(raw)) return raw.flatMap((v, i) => secretKeysIn(v, `${at}[${i}]`));
  if (raw && typeof raw === 'object') return Object.entries(raw).flatMap(([k, v]) => secretKeysIn(v, at ? `${at}.${k}` : k));
  return [];
}

/**
 * The warning for a config file that every user of the machine may read and that holds secrets (the database's
 * password, S3 secret keys, the SMTP password), or null. The daemons log it at start and `lis config` prints it:
 * `./var/pg.password` is kept at 0600, and a config file copied in at the default 0644 gave the same password to
 * anyone with a shell. A file that cannot be read or parsed is for loadConfig to report.
 */
export function configFileExposure(file: string | null): string | null {
  if (!file) return null;
  let mode: number;
  let raw: unknown;
  try {
    mode = fs.statSync(file).mode & 0o777;
    if ((mode & 0o004) === 0 || !reachableByOthers(path.dirname(path.resolve(file)))) return null;
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
  const keys = secretKeysIn(raw);
  if (keys.length === 0) return null;
  return (
    `config file ${file} is readable by every user (mode ${mode.toString(8).padStart(3, '0')}) and holds secrets (${keys.join(', ')}): ` +
    `chmod o-r ${file} (its group or owner being the daemons' user), or give them in the environment (LIS_DATABASE_URL, LIS_SMTP_PASSWORD)`
  );
}

/** Whether users other than the owner may pass through `dir` and every folder above it (a mkdtemp folder, 0700, keeps its files closed). */
function reachableByOthers(dir: string): boolean {
  for (let d = dir; ; d = path.dirname(d)) {
    if ((fs.statSync(d).mode & 0o001) === 0) return false;
    if (path.dirname(d) === d) return true;
  }
}
