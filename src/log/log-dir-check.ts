import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LisError, errorMessage } from '../errors.ts';

/** Who we run as, for the message: a systemd unit's `User=` is the usual culprit. */
function currentUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

/**
 * Makes `dir` if need be and checks that this process can write the log files of `base` there: the folder,
 * and such files already in it (left by a run as another user, e.g. root by hand before a unit with
 * `User=imagesys`). Without it a daemon died of a Node stack trace from the mkdir, or of an unhandled 'error'
 * event from the rotating file's stream, at every start, naming neither log.dir nor the user.
 */
export function checkLogDir(dir: string, base: string): void {
  const refuse = (what: string, error: unknown): never => {
    throw new LisError(
      'ERR_LOG_DIR',
      `cannot write ${what} (log.dir) as user ${currentUser()}: ${errorMessage(error)}; make it writable by that user, or set log.dir`,
    );
  };
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (error) {
    refuse(dir, error);
  }
  for (const name of fs.readdirSync(dir)) {
    if (!name.startsWith(`${base}-`) && !name.startsWith(`${base}.error-`) && !name.startsWith(`.${base}-`)) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.W_OK);
    } catch (error) {
      refuse(file, error);
    }
  }
}
