import { spawn, type ChildProcess } from 'node:child_process';
import { LisError } from '../errors.ts';
import { classifyRsyncExit, type RsyncOutcome } from './rsync-outcome.ts';
import type { RsyncInvocation } from './rsync-command.ts';

/** Keep this much of each stream: rsync's messages are short, a runaway stream must not fill memory. */
const KEEP_CHARS = 64 * 1024;
const RUNNING_TICK_MS = 1000;

/** The rsyncs running now: ended with this process (a second signal's exit at once), see runRsync. */
const running = new Set<ChildProcess>();
let endedWithUs = false;

function endWithThisProcess(child: ChildProcess): void {
  running.add(child);
  child.once('close', () => running.delete(child));
  child.once('error', () => running.delete(child));
  if (endedWithUs) return;
  endedWithUs = true;
  process.on('exit', () => {
    for (const c of running) c.kill('SIGTERM');
  });
}

/**
 * Runs one rsync to the end and says how it went, calling `whileRunning` once
 * a second until it ends. Never throws: a binary
 * that cannot be started is the outcome `rsync_missing`. It is not killed on
 * SIGTERM or SIGINT: the chunk in hand is finished, and `--timeout` bounds it.
 * So it runs in a process group of its own: Ctrl-C at a terminal signals the
 * whole foreground group, and an rsync killed by it (exit 20) failed the chunk
 * in hand, its rows held back queue.oursRetrySeconds, where a stop gives them
 * back untouched (an rsync killed otherwise is `rsync_killed`). A process that
 * exits (a second signal: at once) ends the rsyncs it started.
 */
export function runRsync(invocation: RsyncInvocation, cwd?: string, whileRunning?: () => void): Promise<RsyncOutcome> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    const keep = (s: string, chunk: Buffer) => (s.length < KEEP_CHARS ? s + chunk.toString('utf8') : s);
    const child = spawn(invocation.command, invocation.args, {
      cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
      detached: true,
    });
    endWithThisProcess(child);
    child.stdout.on('data', (c: Buffer) => (stdout = keep(stdout, c)));
    child.stderr.on('data', (c: Buffer) => (stderr = keep(stderr, c)));
    // rsync may exit (a refused connection) before reading its list: a broken pipe here is not our failure.
    child.stdin.on('error', () => {});
    child.stdin.end(invocation.input);
    child.on('error', (error: NodeJS.ErrnoException) => {
      resolve({
        ok: false,
        exitCode: null,
        errorClass: error.code === 'ENOENT' ? 'rsync_missing' : 'rsync_error',
        message: error.code === 'ENOENT' ? rsyncMissingMessage(invocation.command) : `cannot start ${invocation.command}: ${error.message}`,
      });
    });
    // Until it ends, once a second: see RsyncMovement.
    const running = whileRunning ? setInterval(whileRunning, RUNNING_TICK_MS) : undefined;
    whileRunning?.();
    const ended = () => clearInterval(running);
    child.on('error', ended);
    child.on('close', (code, signal) => {
      ended();
      resolve(classifyRsyncExit(code, signal, stderr, stdout));
    });
  });
}

export function rsyncMissingMessage(command: string): string {
  return `rsync not found: install it (apt-get install rsync)${command === 'rsync' ? '' : `, or fix push.rsyncPath (${command})`}`;
}

/** Start-up check: the configured rsync runs and is new enough for `--mkpath` (3.2.3). Returns its version. */
export async function checkRsync(command: string): Promise<string> {
  const outcome = await new Promise<{ code: number | null; out: string; missing: boolean; error?: string }>((resolve) => {
    let out = '';
    // A group of its own, as runRsync's: Ctrl-C at a terminal during start-up killed this check (exit null), and the
    // stop meant for us came out as "install rsync", exit 1.
    const child = spawn(command, ['--version'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', (e: NodeJS.ErrnoException) => resolve({ code: null, out, missing: e.code === 'ENOENT' || e.code === 'EACCES', error: e.message }));
    child.on('close', (code) => resolve({ code, out, missing: false }));
  });
  if (outcome.missing) throw new LisError('ERR_RSYNC_MISSING', rsyncMissingMessage(command));
  const version = /rsync\s+version\s+v?(\d+)\.(\d+)\.(\d+)/.exec(outcome.out);
  if (outcome.code !== 0 || !version)
    throw new LisError(
      'ERR_RSYNC_MISSING',
      `${command} --version did not run as rsync (${outcome.error ?? `exit ${outcome.code}`}): install rsync (apt-get install rsync)`,
    );
  const [major, minor, patch] = version.slice(1).map(Number);
  if (major * 10000 + minor * 100 + patch < 30203) {
    throw new LisError('ERR_RSYNC_TOO_OLD', `rsync ${major}.${minor}.${patch} is too old: lis_pusherd needs 3.2.3 or newer (--mkpath)`);
  }
  return `${major}.${minor}.${patch}`;
}
