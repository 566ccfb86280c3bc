/**
 * What one rsync run came to, for people (`message`, quoting rsync) and for
 * counting (`errorClass`, stable):
 * - `frontend_down`: could not reach it (refused, unreachable, ssh failed, closed);
 * - `frontend_timeout`: reached, then nothing moved for `push.timeoutSeconds`;
 * - `frontend_disk_full`: the frontend's disk (or quota) is full;
 * - `files_vanished`: exit 24, source files went away during the run (the rest arrived);
 * - `rsync_missing`: the rsync binary could not be started;
 * - `rsync_killed`: our rsync was killed by a signal on this host (the OOM killer, an operator's kill: a signal
 *   kills it, SIGTERM, SIGINT or SIGHUP make it exit 20, `[sender=...]`): our process died, the frontend refused nothing;
 * - `rsync_error`: anything else rsync refused or failed at (bad module, permissions, ...).
 */
export type RsyncErrorClass = 'frontend_down' | 'frontend_timeout' | 'frontend_disk_full' | 'files_vanished' | 'rsync_missing' | 'rsync_killed' | 'rsync_error';

export interface RsyncStats {
  filesTransferred: number;
  bytesTransferred: number;
}

export type RsyncOutcome = { ok: true; stats: RsyncStats } | { ok: false; errorClass: RsyncErrorClass; exitCode: number | null; message: string };

/** rsync's EXIT VALUES (man rsync). */
const EXIT_MEANINGS: Record<number, string> = {
  1: 'syntax or usage error',
  2: 'protocol incompatibility',
  3: 'errors selecting input/output files, dirs',
  4: 'requested action not supported',
  5: 'error starting client-server protocol',
  6: 'daemon unable to append to log-file',
  10: 'error in socket I/O',
  11: 'error in file I/O',
  12: 'error in rsync protocol data stream',
  13: 'errors with program diagnostics',
  14: 'error in IPC code',
  15: 'sibling process crashed',
  16: 'sibling process terminated abnormally',
  19: 'received SIGUSR1',
  20: 'received SIGINT, SIGTERM, or SIGHUP',
  21: 'some error returned by waitpid()',
  22: 'error allocating core memory buffers',
  23: 'partial transfer due to error',
  24: 'partial transfer due to vanished source files',
  25: 'the --max-delete limit stopped deletions',
  30: 'timeout in data send/receive',
  35: 'timeout waiting for daemon connection',
  255: 'the remote shell failed',
};

const UNREACHABLE =
  /Connection refused|No route to host|Network is unreachable|Name or service not known|Could not resolve hostname|Temporary failure in name resolution|Connection timed out|connection unexpectedly closed|Connection reset by peer|Permission denied \(publickey|Host key verification failed|failed to connect to/i;
const DISK_FULL = /No space left on device|Disk quota exceeded/i;

/**
 * rsync's closing line when the process that received SIGINT, SIGTERM or SIGHUP is the sender: in a push, our own
 * client. The frontend's side (a frontend shutting down signals its rsync) says `[generator=...]` or
 * `[Receiver=...]`, and our client exits 20 too: that one stays the frontend's.
 */
const OUR_SENDER_SIGNALLED = /\(code 20\) at \S+ \[sender=/;

/** Pure: classifies an exit (code, or the signal that killed rsync) with its stderr. */
export function classifyRsyncExit(exitCode: number | null, signal: string | null, stderr: string, stdout = ''): RsyncOutcome {
  if (exitCode === 0) return { ok: true, stats: parseRsyncStats(stdout) };
  const meaning = exitCode === null ? `killed by ${signal ?? 'a signal'}` : `exit ${exitCode}${EXIT_MEANINGS[exitCode] ? ` (${EXIT_MEANINGS[exitCode]})` : ''}`;
  const said = rsyncSaid(stderr);
  const errorClass = errorClassOf(exitCode, stderr);
  // Said at once, before rsync's own lines: whoever reads last_error or the log must not go looking at the frontend.
  const whose = errorClass === 'rsync_killed' ? ' on this host (the OOM killer, or a kill): not the frontend' : '';
  const message = `rsync ${meaning}${whose}${said ? `: ${said}` : ''}`.slice(0, 1000);
  return { ok: false, errorClass, exitCode, message };
}

function errorClassOf(exitCode: number | null, stderr: string): RsyncErrorClass {
  // Killed by a signal, or exit 20 (rsync's own handler for SIGINT, SIGTERM and SIGHUP) in our sender: our process died, which
  // as rsync_error marked the frontend down and alerted on it until its next push. Our own stop never gets here:
  // a first signal leaves the rsyncs alone (a group of their own), a second ends them as this process exits.
  if (exitCode === null || (exitCode === 20 && OUR_SENDER_SIGNALLED.test(stderr))) return 'rsync_killed';
  if (DISK_FULL.test(stderr)) return 'frontend_disk_full';
  if (exitCode === 24) return 'files_vanished';
  if (exitCode === 30) return 'frontend_timeout';
  if (exitCode === 10 || exitCode === 35 || exitCode === 255) return 'frontend_down';
  if ((exitCode === 5 || exitCode === 12) && UNREACHABLE.test(stderr)) return 'frontend_down';
  return 'rsync_error';
}

/**
 * Pure: did rsync fail only because another rsync made the destination folder at the same moment? rsync
 * looks for the destination folder and, finding none, makes it; a second rsync to the same new folder (the
 * next chunk's, backfill's, another country's pusher's) can find it missing too, then fail to make it:
 * `mkdir "live" (in thumbs) failed: File exists (17)`, exit 11 (RsyncProject/rsync issue 863). The folder is
 * there now, so the same rsync run again goes through: it is no fault of the frontend's.
 */
export function lostDestinationRace(outcome: RsyncOutcome): boolean {
  return !outcome.ok && outcome.exitCode === 11 && /\bmkdir "[^"]*"[^:]* failed: File exists \(17\)/.test(outcome.message);
}

/** The lines of stderr that say what went wrong (rsync's own, the daemon's @ERROR, ssh's), de-duplicated. */
export function rsyncSaid(stderr: string): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  const telling = lines.filter((l) => /^(rsync:|rsync error:|@ERROR|ssh:|ERROR:)|Permission denied|Connection refused|No space left/i.test(l));
  const chosen = [...new Set(telling.length ? telling : lines.slice(-3))];
  // rsync's closing "rsync error: ... (code N) at main.c(1234)" only repeats the exit code: keep it last and short.
  return chosen
    .map((l) => l.replace(/ at [\w./-]+\(\d+\) \[[^\]]*\]/, ''))
    .slice(0, 4)
    .join('; ');
}

/** Pure: `--stats` figures from stdout (numbers may carry thousands separators). */
export function parseRsyncStats(stdout: string): RsyncStats {
  const number = (re: RegExp) => Number((re.exec(stdout)?.[1] ?? '0').replace(/[,.](?=\d{3}\b)/g, ''));
  return {
    filesTransferred: number(/Number of regular files transferred:\s*([\d,.]+)/),
    bytesTransferred: number(/Total transferred file size:\s*([\d,.]+)/),
  };
}
