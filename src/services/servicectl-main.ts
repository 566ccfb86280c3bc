import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { runtimePath } from '../util/package-root.ts';
import type { LisConfig } from '../config/config-schema.ts';
import { loadConfig } from '../config/load-config.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { cliProgram } from '../util/cli-program.ts';
import { READY_FILE_ENV, readReadyPid } from '../daemon/ready-signal.ts';
import { LisError, UsageError, errorMessage } from '../errors.ts';
import { readFileOrNull, replaceWhole } from '../util/exclusive-file.ts';
import { LockHeldError, waitForPidLock } from '../util/pid-lock-file.ts';
import { isProcessAlive } from '../util/process-alive.ts';
import { DAEMON_ENV, nodeFlagsOf } from './launch-settings.ts';
import { environHas, serviceState, waitForExit } from './process-control.ts';
import { instancesOf, type ServiceInstance } from './service-instances.ts';
import { SERVICES } from './service-names.ts';

const out = (text: string) => process.stdout.write(text);
const ACTIONS = ['start', 'stop', 'restart', 'status'];
/** The supervisor (a shell script beside this file, in src/ or dist/src/) that keeps an instance running. */
const SUPERVISOR = runtimePath('src', 'services', 'supervise.sh');
/** A supervisor's command line names its pid file: a pid file naming some other process is known stale. */
const supervisorMarker = (instance: ServiceInstance) => `\0${instance.pidFile}\0`;

/**
 * A daemon of this instance still running after its supervisor died (SIGKILL, the OOM killer): its pid, else
 * null. Known by its environment (the ready file its supervisor gave it), so a pid reused by another program is
 * not taken for it. Left alone it would be invisible: status would call the service dead, start would add a
 * second daemon beside it, and stop would not stop it.
 */
function unsupervisedDaemon(instance: ServiceInstance): number | null {
  const pid = readReadyPid(instance.readyFile);
  return pid !== null && environHas(pid, `${READY_FILE_ENV}=${instance.readyFile}`) ? pid : null;
}

/** The command that puts an instance back under a supervisor. */
const restartCommand = (instance: ServiceInstance) => `servicectl restart ${instance.service}${instance.country ? ` --country ${instance.country}` : ''}`;

/** SIGTERMs `pid` (a supervisor passes it on), waits for it and then for `daemon`, SIGKILLs both after the grace. */
async function terminate(config: LisConfig, pid: number, daemon: number | null): Promise<void> {
  process.kill(pid, 'SIGTERM');
  out(`Waiting for ${daemon ?? pid} to die...`);
  const timeoutMs = config.services.stopTimeoutSeconds * 1000;
  if ((await waitForExit(pid, timeoutMs)) && (daemon === null || daemon === pid || (await waitForExit(daemon, 5_000)))) {
    out('dead.\n');
  } else {
    for (const p of [daemon, pid]) if (p !== null && isProcessAlive(p)) process.kill(p, 'SIGKILL');
    await waitForExit(pid, 10_000);
    out(`still alive after ${config.services.stopTimeoutSeconds}s: killed (SIGKILL); the manager releases the rows it held.\n`);
  }
}

function daemonArgs(instance: ServiceInstance, configFile: string | undefined): string[] {
  return ['--service', ...(instance.country ? ['--country', instance.country] : []), ...(configFile ? ['--config', configFile] : [])];
}

/** Resolves when the daemon has written its ready file ('ready'), or the supervisor exited ('died'), or at the deadline. */
function readyOrDeath(instance: ServiceInstance, supervisor: ReturnType<typeof spawn>, timeoutMs: number): Promise<'ready' | 'died' | 'timeout'> {
  return new Promise((resolve) => {
    const deadline = performance.now() + timeoutMs;
    let exited = false;
    supervisor.once('exit', () => (exited = true));
    const check = () => {
      // Ready counts only while the supervisor lives: a daemon that says ready and dies at once has not started.
      if (exited) resolve('died');
      else if (readReadyPid(instance.readyFile) !== null) resolve('ready');
      else if (performance.now() > deadline) resolve('timeout');
      else setTimeout(check, 100);
    };
    check();
  });
}

async function start(config: LisConfig, instance: ServiceInstance, configFile: string | undefined): Promise<number> {
  const state = serviceState(instance.pidFile, supervisorMarker(instance));
  if (state.state === 'running') {
    out(`${instance.label} is already running (pid ${readReadyPid(instance.readyFile) ?? state.pid})\n`);
    return 0;
  }
  const orphan = unsupervisedDaemon(instance);
  if (orphan !== null) {
    out(`${instance.label} is already running (pid ${orphan}), without its supervisor: \`${restartCommand(instance)}\` to supervise it again\n`);
    return 0;
  }
  fs.mkdirSync(path.dirname(instance.pidFile), { recursive: true });
  fs.mkdirSync(path.dirname(instance.outFile), { recursive: true });
  fs.rmSync(instance.readyFile, { force: true });
  fs.rmSync(instance.failedFile, { force: true });
  // The daemon's own output (a crash's last words): its owner's and group's only, as its log files.
  const fd = fs.openSync(instance.outFile, 'a', 0o640);
  const node = [process.execPath, ...nodeFlagsOf(SERVICES[instance.service].bin)];
  const args = [SUPERVISOR, instance.readyFile, instance.pidFile, instance.label, ...node, instance.executable, ...daemonArgs(instance, configFile)];
  const supervisor = spawn('/bin/sh', args, { detached: true, stdio: ['ignore', fd, fd], env: { ...DAEMON_ENV, ...process.env } });
  fs.closeSync(fd);
  // Whole or absent: a `servicectl status` meeting it half written would call the service stale.
  replaceWhole(instance.pidFile, `${supervisor.pid}\n${instance.label} supervisor, started ${new Date().toISOString()}\n`);
  out(`Starting ${instance.label}...`);
  const outcome = await readyOrDeath(instance, supervisor, config.services.startTimeoutSeconds * 1000);
  supervisor.unref();
  if (outcome === 'ready') {
    out(`started (pid ${readReadyPid(instance.readyFile)}).\n`);
    return 0;
  }
  if (outcome === 'died') {
    fs.rmSync(instance.pidFile, { force: true });
    const tail = fs.readFileSync(instance.outFile, 'utf8').trimEnd().split('\n').slice(-8).join('\n');
    out(`failed.\n${tail}\n`);
    return 1;
  }
  out(`not ready after ${config.services.startTimeoutSeconds}s; still trying (supervisor pid ${supervisor.pid}): see ${instance.outFile} and the log\n`);
  return 1;
}

async function stop(config: LisConfig, instance: ServiceInstance): Promise<number> {
  const state = serviceState(instance.pidFile, supervisorMarker(instance));
  if (state.state !== 'running') {
    const orphan = unsupervisedDaemon(instance);
    if (orphan !== null) {
      // Its supervisor died: the daemon itself is told to finish its rows and stop.
      await terminate(config, orphan, null);
    } else if (state.state === 'stopped') {
      if (fs.existsSync(instance.failedFile)) fs.rmSync(instance.failedFile);
      out(`${instance.label} is not running\n`);
      return 0;
    } else {
      out(`${instance.label} is not running (removed stale pid file for ${state.pid})\n`);
    }
  } else {
    // The supervisor passes SIGTERM on to the daemon and exits once the daemon has.
    await terminate(config, state.pid, readReadyPid(instance.readyFile));
  }
  for (const file of [instance.pidFile, instance.readyFile, instance.failedFile]) fs.rmSync(file, { force: true });
  return 0;
}

/**
 * LSB status codes: 0 running, 1 dead with a pid file left, 3 stopped, 4 supervised but not ready (starting, or
 * restarting after a crash) or running without its supervisor (nothing would start it again).
 */
function status(instance: ServiceInstance): number {
  const state = serviceState(instance.pidFile, supervisorMarker(instance));
  const orphan = state.state === 'running' ? null : unsupervisedDaemon(instance);
  if (orphan !== null) {
    const supervisor = state.state === 'stale' ? `its supervisor (pid ${state.pid}) died` : 'its supervisor died';
    out(
      `${instance.label} is running (pid ${orphan}) without a supervisor (${supervisor}): nothing starts it again if it dies; \`${restartCommand(instance)}\` supervises it again\n`,
    );
    return 4;
  }
  if (state.state === 'running') {
    const daemon = readReadyPid(instance.readyFile);
    if (daemon !== null && isProcessAlive(daemon)) {
      out(`${instance.label} is running (pid ${daemon}, since ${fs.statSync(instance.readyFile).mtime.toISOString()})\n`);
      return 0;
    }
    out(`${instance.label} is not ready: starting, or restarting after a crash (supervisor pid ${state.pid}; see ${instance.outFile})\n`);
    return 4;
  }
  if (state.state === 'stale') {
    out(`${instance.label} is not running, but its pid file names ${state.pid} (stale: it died)\n`);
    return 1;
  }
  const failed = readFileOrNull(instance.failedFile)?.trim();
  if (failed) {
    // Stopped, but not by anyone: its last start failed (at once, or after "not ready after Ns; still trying").
    out(`${instance.label} is stopped: it failed to start (${failed}); see ${instance.outFile}\n`);
    return 3;
  }
  out(`${instance.label} is stopped\n`);
  return 3;
}

/**
 * Makes the instance's run and log folders if need be. One that cannot be made or written (a file in the way, a
 * folder owned by another user) is named with its config key, not left to a stack trace from deep inside a start.
 */
function ensureServiceDirs(instance: ServiceInstance): void {
  const dirs: Array<[string, string]> = [
    ['services.runDir', path.dirname(instance.pidFile)],
    ['log.dir', path.dirname(instance.outFile)],
  ];
  for (const [key, dir] of dirs) {
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.accessSync(dir, fs.constants.W_OK);
    } catch (error) {
      throw new LisError('ERR_SERVICE_DIR', `cannot use ${key} ${dir} for ${instance.label}: ${errorMessage(error)}`);
    }
  }
  try {
    if (fs.existsSync(instance.outFile)) fs.accessSync(instance.outFile, fs.constants.W_OK);
  } catch (error) {
    throw new LisError('ERR_SERVICE_DIR', `cannot write ${instance.outFile} (log.dir) for ${instance.label}: ${errorMessage(error)}`);
  }
}

/**
 * Runs `action` (a start, a restart) as the one servicectl starting the instance. Two starts at once (a deploy
 * script and an operator, a loop run twice) each found it stopped and each spawned a supervisor; the second's pid
 * file hid the first's daemon from stop for good. The later one now waits for the first to finish (until ready,
 * or failed), then finds the service as that one left it.
 */
async function exclusively(config: LisConfig, instance: ServiceInstance, action: () => Promise<number>): Promise<number> {
  ensureServiceDirs(instance);
  const waitSeconds = config.services.startTimeoutSeconds + config.services.stopTimeoutSeconds + 30;
  let release: () => void;
  try {
    release = await waitForPidLock(instance.lockFile, `servicectl for ${instance.label} since ${new Date().toISOString()}`, waitSeconds * 1000);
  } catch (error) {
    if (!(error instanceof LockHeldError)) throw error;
    throw new LisError('ERR_SERVICE_BUSY', `another servicectl (pid ${error.holderPid}) is still starting or stopping ${instance.label} after ${waitSeconds}s`);
  }
  try {
    return await action();
  } finally {
    release();
  }
}

/** Runs an action on each instance in turn; the first non-zero code, else 0. */
async function eachInstance(instances: ServiceInstance[], action: (i: ServiceInstance) => Promise<number> | number): Promise<number> {
  let code = 0;
  for (const instance of instances) {
    const result = await action(instance);
    if (code === 0) code = result;
  }
  return code;
}

/** servicectl start|stop|restart|status SERVICE [--country uk] */
export async function servicectlMain(argv = process.argv): Promise<void> {
  const program = cliProgram('servicectl')
    .description(
      `start, stop and check the ImageSys daemons as services (${Object.keys(SERVICES).join(', ')}); each runs under a supervisor that starts it again when it dies`,
    )
    .argument('<action>', 'start, stop, restart or status')
    .argument('<service>', 'e.g. imagesys-downloadd')
    .option('--country <code>', 'one country\'s instance (default: every country in the config\'s "countries")')
    .option('--config <file>', 'config file, passed on to the daemon')
    .showHelpAfterError()
    .action((action: string, name: string, opts: { country?: string; config?: string }) =>
      runCommand(async () => {
        // The action first: a typo in it must be named as such, not hidden behind a complaint about the service or the config.
        if (!ACTIONS.includes(action)) throw new UsageError(`unknown action ${JSON.stringify(action)}: expected ${ACTIONS.join(', ')}`);
        const config = loadConfig({ file: opts.config });
        const instances = instancesOf(config, name, opts.country);
        const configFile = opts.config ? path.resolve(opts.config) : undefined;
        switch (action) {
          case 'start':
            return eachInstance(instances, (i) => exclusively(config, i, () => start(config, i, configFile)));
          case 'stop':
            // Not exclusively: a stop must end a start still waiting for its daemon (which then reports "failed") at once.
            return eachInstance(instances, (i) => stop(config, i));
          case 'restart':
            return eachInstance(instances, (i) => exclusively(config, i, async () => (await stop(config, i), start(config, i, configFile))));
          case 'status':
            return eachInstance(instances, status);
          default:
            throw new Error(`action ${action} is in ACTIONS but not handled`);
        }
      }),
    );
  await program.parseAsync(argv);
}
