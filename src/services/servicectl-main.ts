import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import type { LisConfig } from '../config/config-schema.ts';
import { parseCountry } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { runCommand, usageErrorsExit2 } from '../cli/exit-on-error.ts';
import { LisError, UsageError } from '../errors.ts';
import { serviceState, waitForExit } from './process-control.ts';
import { SERVICES, parseServiceName, pidFileName, type ServiceName } from './service-names.ts';
import { packagePath } from '../util/package-root.ts';

const BIN_DIR = packagePath('bin');
const out = (text: string) => process.stdout.write(text);

interface Target {
  service: ServiceName;
  country: string | undefined;
  pidFile: string;
  executable: string;
  label: string;
}

function targetOf(config: LisConfig, name: string, countryFlag: string | undefined): Target {
  const service = parseServiceName(name);
  const spec = SERVICES[service];
  if (spec.perCountry && countryFlag === undefined) throw new UsageError(`${service} runs per country: give --country, e.g. --country uk`);
  const country = countryFlag === undefined ? undefined : parseCountry(countryFlag, config);
  const executable = path.join(BIN_DIR, spec.bin);
  if (!fs.existsSync(executable)) throw new LisError('ERR_NO_SERVICE', `${service} is not installed (${executable} missing)`);
  return { service, country, executable, pidFile: path.join(config.services.runDir, pidFileName(service, country)), label: country ? `${service} (${country})` : service };
}

async function start(config: LisConfig, target: Target, configFile: string | undefined): Promise<number> {
  const state = serviceState(target.pidFile, target.executable);
  if (state.state === 'running') {
    out(`${target.label} is already running (pid ${state.pid})\n`);
    return 0;
  }
  fs.mkdirSync(path.dirname(target.pidFile), { recursive: true });
  fs.mkdirSync(config.log.dir, { recursive: true });
  // What the process prints before its logger is up (a crash at start) lands here.
  const outFile = path.join(config.log.dir, `${SERVICES[target.service].component}.out`);
  const fd = fs.openSync(outFile, 'a');
  const args = [target.executable, '--service', ...(target.country ? ['--country', target.country] : []), ...(configFile ? ['--config', configFile] : [])];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd], env: { MALLOC_ARENA_MAX: '2', ...process.env } });
  fs.closeSync(fd);
  fs.writeFileSync(target.pidFile, `${child.pid}\n${target.label} started ${new Date().toISOString()}\n`);
  child.unref();
  out(`Starting ${target.label}...`);
  // A daemon that cannot start (bad config, no database) exits at once: wait long enough to see it.
  const died = await waitForExit(child.pid!, 2500);
  if (died) {
    fs.rmSync(target.pidFile, { force: true });
    const tail = fs.readFileSync(outFile, 'utf8').trimEnd().split('\n').slice(-8).join('\n');
    out(`failed.\n${tail}\n`);
    return 1;
  }
  out(`started (pid ${child.pid}).\n`);
  return 0;
}

async function stop(config: LisConfig, target: Target): Promise<number> {
  const state = serviceState(target.pidFile, target.executable);
  if (state.state === 'stopped') {
    out(`${target.label} is not running\n`);
    return 0;
  }
  if (state.state === 'stale') {
    fs.rmSync(target.pidFile, { force: true });
    out(`${target.label} is not running (removed stale pid file for ${state.pid})\n`);
    return 0;
  }
  process.kill(state.pid, 'SIGTERM');
  out(`Waiting for ${state.pid} to die...`);
  if (await waitForExit(state.pid, config.services.stopTimeoutSeconds * 1000)) {
    out('dead.\n');
  } else {
    process.kill(state.pid, 'SIGKILL');
    await waitForExit(state.pid, 10_000);
    out(`still alive after ${config.services.stopTimeoutSeconds}s: killed (SIGKILL); the manager releases the rows it held.\n`);
  }
  fs.rmSync(target.pidFile, { force: true });
  return 0;
}

/** LSB status codes: 0 running, 1 dead with a pid file left, 3 stopped. */
function status(target: Target): number {
  const state = serviceState(target.pidFile, target.executable);
  if (state.state === 'running') {
    out(`${target.label} is running (pid ${state.pid}, since ${state.since.toISOString()})\n`);
    return 0;
  }
  if (state.state === 'stale') {
    out(`${target.label} is not running, but its pid file names ${state.pid} (stale: it died)\n`);
    return 1;
  }
  out(`${target.label} is stopped\n`);
  return 3;
}

/** servicectl start|stop|restart|status SERVICE [--country uk] */
export async function servicectlMain(argv = process.argv): Promise<void> {
  const program = usageErrorsExit2(new Command('servicectl'))
    .description(`start, stop and check the ImageSys daemons as services (${Object.keys(SERVICES).join(', ')})`)
    .argument('<action>', 'start, stop, restart or status')
    .argument('<service>', 'e.g. imagesys-downloadd')
    .option('--country <code>', 'the country (the stage daemons run one instance per country)')
    .option('--config <file>', 'config file, passed on to the daemon')
    .showHelpAfterError()
    .action((action: string, name: string, opts: { country?: string; config?: string }) =>
      runCommand(async () => {
        const config = loadConfig({ file: opts.config });
        const target = targetOf(config, name, opts.country);
        const configFile = opts.config ? path.resolve(opts.config) : undefined;
        switch (action) {
          case 'start': return start(config, target, configFile);
          case 'stop': return stop(config, target);
          case 'restart': await stop(config, target); return start(config, target, configFile);
          case 'status': return status(target);
          default: throw new UsageError(`unknown action ${JSON.stringify(action)}: expected start, stop, restart or status`);
        }
      }),
    );
  await program.parseAsync(argv);
}
