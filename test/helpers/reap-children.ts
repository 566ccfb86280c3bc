import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { childrenOf } from './frozen-server.ts';

/**
 * Kills, when a test process ends, every child process it started that is still running. A test stops what it
 * starts in its `finally`; but a run stopped from outside (`kill` of mocha's process, a CI job's timeout signalling
 * one process) ends its workers without reaching those: workerpool's worker calls process.exit(1) when its runner's
 * channel closes, and a SIGTERM ends a process at once. The lis daemons, rsync daemons, nginx and HTTP servers the
 * tests had started were then left running after the run (seen in session 31, after a `pkill mocha`).
 *
 * Every child a process starts asynchronously (spawn, execFile, exec, fork) is made by ChildProcess.prototype.spawn:
 * it is wrapped here to keep a set of the live ones. On the process's exit they get SIGKILL (an exit handler may only
 * do synchronous work, and a signal is sent at once; a daemon's graceful stop would outlive us). In a mocha worker
 * (a child with an IPC channel), SIGTERM, SIGINT and SIGHUP end the process through process.exit, so that the exit
 * handler runs; mocha's main process keeps its own handling of them (its Ctrl-C ends the run and reports it).
 * The children's own children are theirs to stop (the daemons stop theirs on SIGTERM; on SIGKILL of a daemon, its
 * rsync clients end with their pipes).
 */
const live = new Set<ChildProcess>();

/** The children started and not yet exited (for the test of this file). */
export function liveChildren(): ReadonlySet<ChildProcess> {
  return live;
}

/**
 * The data folders of the PostgreSQL servers a test started for itself. pg_ctl starts a server detached (it outlives
 * whoever started it, as `lis db start` wants), so it is no child to kill: the test names its folder here, and when
 * the process ends with the server still up (the test's `after` never reached), its postmaster and every process of
 * it are killed, by the pid the server wrote in the folder, and only if that process is a postgres of that folder.
 * All of them, not the postmaster alone: a backend notices its postmaster's death, but not while a test holds it
 * stopped (freezeServer stops every process of a server), and SIGKILL ends a stopped process as any other.
 */
const servers = new Set<string>();

/** Kill the PostgreSQL server of `dataDir` when this process ends, if it is still running then. */
export function killServerAtExit(dataDir: string): void {
  servers.add(path.resolve(dataDir));
}

function killServers(): void {
  for (const dataDir of servers) {
    try {
      const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      const command = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (!command[0].endsWith('postgres') || !command.includes(dataDir)) continue;
      const processes = [pid, ...childrenOf(pid)];
      for (const each of processes) {
        try {
          process.kill(each, 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
    } catch {
      // Stopped already (no postmaster.pid), or gone: nothing to do.
    }
  }
}

function killLiveChildren(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Gone meanwhile: nothing to stop.
    }
  }
}

const installed = Symbol.for('imagesys.test.reapChildren');
/** ChildProcess's prototype as Node has it: its spawn(options) is not in @types/node (an internal method). */
interface SpawningPrototype {
  spawn: (this: ChildProcess, options: unknown) => unknown;
  [installed]?: boolean;
}
const prototype = ChildProcess.prototype as unknown as SpawningPrototype;
// Once per process, whichever way the module is reached (mocha's --require, a test that imports it).
if (!prototype[installed]) {
  prototype[installed] = true;
  const spawn = prototype.spawn;
  prototype.spawn = function (this: ChildProcess, options: unknown) {
    const result = spawn.call(this, options);
    if (this.pid !== undefined) {
      live.add(this);
      this.once('exit', () => live.delete(this));
    }
    return result;
  };
  process.on('exit', () => {
    killLiveChildren();
    killServers();
  });
  if (typeof process.send === 'function') {
    for (const [signal, code] of [
      ['SIGTERM', 143],
      ['SIGINT', 130],
      ['SIGHUP', 129],
    ] as const)
      process.once(signal, () => process.exit(code));
  }
}
