import { spawn } from 'node:child_process';
import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import { recordEvent } from './manager-events.ts';
import { packagePath } from '../util/package-root.ts';

const CRON_FRONTEND_BIN = packagePath('bin', 'lis_cron_frontend');

/** How the upkeep's child process ended: its exit code, or the signal that killed it. */
interface UpkeepEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Pure: `exited 1`, `was killed (SIGKILL)`. */
function describeEnd({ code, signal }: UpkeepEnd): string {
  return signal ? `was killed (${signal})` : `exited ${code}`;
}

function runChild(log: Logger, configFile: string | undefined, env: NodeJS.ProcessEnv): Promise<UpkeepEnd> {
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
      else log.error(`lis_cron_frontend --all ${describeEnd({ code, signal })}: ${tail.trimEnd().split('\n').slice(-6).join(' | ')}`, scope);
      resolve({ code, signal });
    });
  });
}

/**
 * The weekly upkeep (`lis_cron_frontend --all`) as a child process, so that
 * its lock files and low priority apply as under cron; given the manager's
 * own --config. A failure is logged at error level with the child's last
 * lines, so that a purge that never runs is seen. Resolves to the exit code.
 */
export async function runUpkeep(log: Logger, configFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<number | null> {
  return (await runChild(log, configFile, env)).code;
}

/**
 * The weekly upkeep of this host (`host`: the manager's config.host), run as under cron. It records its outcome
 * per country under this host; a run that failed without recording one (a crash, killed, no database) is
 * recorded here, so the upkeep alert fires. Only this host's outcomes count as recorded: another host's run
 * failing meanwhile says nothing of this one. The start is read from the database's clock, which stamps the
 * outcomes (this host's clock may be off).
 */
export async function upkeepFromManager(
  db: Db,
  log: Logger,
  host: string,
  configFile: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const scope = { scope: 'Manager::cron_frontend' };
  const started = await databaseNow(db).catch((error) => {
    log.error(`reading the database's clock failed: ${errorMessage(error)}; a crash of this upkeep may go unrecorded`, scope);
    return null;
  });
  const end = await runChild(log, configFile, env);
  if (end.code === 0 || !started) return;
  try {
    const recorded = await db
      .selectFrom('manager_events')
      .select('id')
      .where('check_name', '=', 'upkeep')
      .where('subject', '=', host)
      .where('at', '>=', started)
      .where('detail', 'like', 'failed:%')
      .executeTakeFirst();
    if (!recorded)
      await recordEvent(db, {
        check: 'upkeep',
        subject: host,
        rows: 0,
        detail: `failed: lis_cron_frontend --all ${describeEnd(end)} (see cron_frontend.error.log)`,
      });
  } catch (error) {
    log.error(`recording the upkeep's failure failed: ${errorMessage(error)}`, scope);
  }
}

async function databaseNow(db: Db): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`SELECT now() AS now`.execute(db);
  return rows[0].now;
}
