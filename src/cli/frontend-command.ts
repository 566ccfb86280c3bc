import type { Command } from 'commander';
import { parseCountry } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import type { Db } from '../db/connect.ts';
import { withDatabase } from '../db/with-database.ts';
import { addFrontend, downFrontends, frontendNameProblem, listFrontends, removeFrontend, setFrontendEnabled } from '../push/frontend-registry.ts';
import { frontendLag } from '../push/frontend-lag.ts';
import { UsageError } from '../errors.ts';
import { FrontendTargetError, normaliseTarget } from '../push/frontend-target.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/** Runs `fn` on the config's database; `checkFirst` judges the arguments before anything is opened. */
async function withDb(command: Command, fn: (db: Db) => Promise<number | void>, checkFirst?: () => void): Promise<void> {
  await runCommand(async () => {
    checkFirst?.();
    const config = loadConfig({ file: configFileOf(command) });
    return withDatabase(config, fn);
  });
}

/** `lis frontend add|list|enable|disable|remove`: the servers lis_pusherd keeps in sync. */
export function addFrontendCommand(program: Command): void {
  const frontend = program.command('frontend').description('manage the frontend servers thumbnails are pushed to');

  frontend
    .command('add')
    .description('add a frontend: TARGET is a local path, rsync://host[:port]/module[/path] or [user@]host:/path')
    .argument('<name>', 'e.g. n1')
    .argument('<target>', 'where its thumbnail root is')
    .option('--disabled', 'add it disabled (enable it later to backfill it)')
    .action((name: string, target: string, opts: { disabled?: boolean }, command: Command) =>
      withDb(
        command,
        async (db) => {
          const normalised = normaliseTarget(target);
          await addFrontend(db, name, normalised, !opts.disabled);
          console.log(`frontend ${name} added (${normalised})${opts.disabled ? ', disabled' : ': lis_pusherd backfills it with everything live'}`);
        },
        () => {
          const nameProblem = frontendNameProblem(name);
          if (nameProblem) throw new UsageError(nameProblem);
          targetArgument(target);
        },
      ),
    );

  frontend
    .command('list')
    .description('list the frontends, with how many rows each lacks (live: backfill to do; push: not yet live)')
    .option('--country <code>', 'count only this country')
    .action((opts: { country?: string }, command: Command) =>
      withDb(command, async (db) => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = opts.country === undefined ? undefined : parseCountry(opts.country, config);
        const frontends = await listFrontends(db);
        const down = new Map((await downFrontends(db)).map((d) => [d.name, d]));
        const lag = new Map((await frontendLag(db, { country })).map((l) => [l.frontend, l]));
        if (frontends.length === 0) {
          console.log('no frontends (lis frontend add NAME TARGET)');
          return;
        }
        console.log(['name', 'enabled', 'lag live', 'lag push', 'last pushed', 'target'].join('\t'));
        for (const f of frontends) {
          const l = lag.get(f.name);
          console.log([f.name, f.enabled ? 'yes' : 'no', l?.live ?? 0, l?.push ?? 0, l?.lastPushedAt?.toISOString() ?? '-', f.target].join('\t'));
          const d = down.get(f.name);
          if (d) console.log(`\tdown since ${d.since.toISOString()}${d.host ? ` (from lis_pusherd on ${d.host})` : ''}: ${d.reason ?? '?'}`);
          if (l?.lastError) console.log(`\tlast error: ${l.lastError}`);
        }
      }),
    );

  frontend
    .command('enable')
    .description('enable a frontend: lis_pusherd backfills what went live while it was disabled')
    .argument('<name>')
    .option('--full', 'forget what it was sent before and send everything live again (a replaced disk)')
    .action((name: string, opts: { full?: boolean }, command: Command) =>
      withDb(command, async (db) => {
        await setFrontendEnabled(db, name, true, { forget: opts.full });
        console.log(`frontend ${name} enabled${opts.full ? ', its push records forgotten' : ''}: lis_pusherd backfills it`);
      }),
    );

  frontend
    .command('disable')
    .description('disable a frontend: it gets nothing more, and rows no longer wait for it to go live')
    .argument('<name>')
    .action((name: string, _opts: unknown, command: Command) =>
      withDb(command, async (db) => {
        await setFrontendEnabled(db, name, false);
        console.log(`frontend ${name} disabled`);
      }),
    );

  frontend
    .command('remove')
    .description('remove a frontend and its push records (its files stay where they are)')
    .argument('<name>')
    .action((name: string, _opts: unknown, command: Command) =>
      withDb(command, async (db) => {
        await removeFrontend(db, name);
        console.log(`frontend ${name} removed`);
      }),
    );
}

/** A target typed on the command line that does not parse is a usage error (exit 2, as every wrong argument), said before connecting. */
function targetArgument(target: string): void {
  try {
    normaliseTarget(target);
  } catch (error) {
    if (error instanceof FrontendTargetError) throw new UsageError(error.message);
    throw error;
  }
}
