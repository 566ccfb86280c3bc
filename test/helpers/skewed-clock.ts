import fs from 'node:fs';
import path from 'node:path';

/** Where Debian's libfaketime (package `faketime`, in the README's test command) puts its library. */
const LIB_DIRS = ['/usr/lib/x86_64-linux-gnu/faketime', '/usr/lib/aarch64-linux-gnu/faketime', '/usr/lib/faketime'];

/**
 * The environment that runs a child process with its wall clock `offsetSeconds` off the real one (this host's
 * clock against the database's, as on a host whose NTP has failed): libfaketime preloaded, its monotonic clock
 * left alone (timers and deadlines measure real time). Throws, never skips, when libfaketime is not installed.
 */
export function skewedClockEnv(offsetSeconds: number): NodeJS.ProcessEnv {
  const lib = LIB_DIRS.map((dir) => path.join(dir, 'libfaketime.so.1')).find((file) => fs.existsSync(file));
  if (!lib) throw new Error(`libfaketime is not installed (apt-get install faketime): looked in ${LIB_DIRS.join(', ')}`);
  return {
    LD_PRELOAD: lib,
    FAKETIME: `${offsetSeconds >= 0 ? '+' : ''}${offsetSeconds}`,
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
    // Read once: a child that re-read the offset on every call would cost time for nothing.
    FAKETIME_NO_CACHE: '0',
  };
}
