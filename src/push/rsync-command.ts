import type { PushConfig } from '../config/push-config.ts';
import { rsyncDestination, type FrontendTarget } from './frontend-target.ts';

export interface RsyncInvocation {
  command: string;
  args: string[];
  /** NUL-separated relative paths, fed on stdin (`--files-from=- --from0`). */
  input: string;
}

/**
 * Pure: one rsync that copies `files` (relative to `sourceRoot`) to a
 * frontend, keeping the relative paths. Why these options:
 * - `--files-from=- --from0`: one process for the whole chunk, any file name;
 *   `--relative` is implied, so `<country>/<aa>/<bb>/` folders are created.
 * - no `--inplace`, no `--partial`: rsync writes a hidden temp file next to
 *   the target and renames it into place, so a web server never serves half a
 *   JPEG; an aborted transfer leaves nothing behind under the real name.
 * - `--times`: a retry of a chunk skips files already there (size + mtime).
 * - `--perms --chmod`: the web server can read what lands, whatever the store's modes.
 * - `--omit-dir-times`: folders are shared by many images; stamping them is wasted work.
 * - `--mkpath`: a remote frontend's root (a daemon module's sub-path, an ssh path) is created when missing.
 *   A local root is not meant to be: pushToFrontends does not run rsync when it is missing (a disk not
 *   mounted), as this would recreate it on the pushing host's own disk.
 * - `--timeout` (and `--contimeout`/`ConnectTimeout`): a dead frontend fails fast instead of hanging.
 * - `--stats`: bytes and files moved, for the log and the benchmark.
 */
export function buildRsyncInvocation(config: PushConfig, target: FrontendTarget, sourceRoot: string, files: string[]): RsyncInvocation {
  const args = [
    '--files-from=-',
    '--from0',
    '--times',
    '--perms',
    `--chmod=${config.chmod}`,
    '--omit-dir-times',
    '--mkpath',
    `--timeout=${config.timeoutSeconds}`,
    '--stats',
  ];
  if (config.bwLimit) args.push(`--bwlimit=${config.bwLimit}`);
  if (target.kind === 'daemon') {
    args.push(`--contimeout=${config.connectTimeoutSeconds}`);
    if (config.daemonPasswordFile) args.push(`--password-file=${config.daemonPasswordFile}`);
  }
  if (target.kind === 'ssh') args.push('-e', sshCommand(config));
  args.push(sourceRoot.endsWith('/') ? sourceRoot : `${sourceRoot}/`, rsyncDestination(target));
  return { command: config.rsyncPath, args, input: files.map((f) => `${f}\0`).join('') };
}

/**
 * Pure: rsync's `-e` value. The operator's options come first because ssh
 * keeps the first value it sees for an option; ours are fall-backs that make
 * a daemon never wait for a password prompt.
 */
export function sshCommand(config: Pick<PushConfig, 'sshPath' | 'sshOptions' | 'connectTimeoutSeconds'>): string {
  const words = [config.sshPath, ...config.sshOptions, '-o', 'BatchMode=yes', '-o', `ConnectTimeout=${config.connectTimeoutSeconds}`];
  return words.map(quoteForRsync).join(' ');
}

/** rsync splits `-e` on spaces and honours single and double quotes (not backslashes). */
export function quoteForRsync(word: string): string {
  if (/^[A-Za-z0-9_./=:,@%+-]+$/.test(word)) return word;
  return word.includes("'") ? `"${word}"` : `'${word}'`;
}
