import { spawn } from 'node:child_process';
import type { Logger } from '../log/create-logger.ts';
import { packagePath } from '../util/package-root.ts';

const CRON_FRONTEND_BIN = packagePath('bin', 'lis_cron_frontend');

/**
 * The weekly upkeep (`lis_cron_frontend --all`) as a child process, so that
 * its lock files and low priority apply as under cron; given the manager's
 * own --config. A failure is logged at error level with the child's last
 * lines, so that a purge that never runs is seen. Resolves to the exit code.
 */
export function runUpkeep(log: Logger, configFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<number | null> {
  return new Promise((resolve) => {
    const args = ['--all', ...(configFile ? ['--config', configFile] : [])];
    const child = spawn(process.execPath, [CRON_FRONTEND_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let tail = '';
    const keep = (chunk: Buffer) => (tail = (tail + chunk.toString()).slice(-4000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('close', (code, signal) => {
      const scope = { scope: 'Manager::cron_frontend' };
      if (code === 0) log.info('lis_cron_frontend --all exited 0', scope);
      else
        log.error(
          `lis_cron_frontend --all ${signal ? `was killed (${signal})` : `exited ${code}`}: ${tail.trimEnd().split('\n').slice(-6).join(' | ')}`,
          scope,
        );
      resolve(code);
    });
  });
}
