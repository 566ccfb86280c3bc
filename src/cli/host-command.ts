import type { Command } from 'commander';
import { sql } from 'kysely';
import { parseCountry } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { withDatabase } from '../db/with-database.ts';
import { LisError, UsageError } from '../errors.ts';
import { redownloadFromGoneHosts } from '../manager/stuck-jobs.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/**
 * `lis host gone NAME [--country uk]`: an operator's word that a host is gone for good (its disks lost with it), so
 * that its rows are downloaded again now rather than after manager.hostGoneHours; what stuck_jobs does then, for
 * that host alone. A host with a live worker is refused (its rows are being worked), and so is a name no worker
 * ever had (a typo would do nothing and say so too late).
 */
export function addHostCommand(program: Command): void {
  const host = program.command('host').description('the hosts that run the daemons against this database');
  host
    .command('gone <name>')
    .description(
      'a host gone for good with its stores: its rows in thumbnail and push go back to download now (uncharged), its marks of frontends down are cleared',
    )
    .option('--country <code>', 'only the rows of this country')
    .action((name: string, opts: { country?: string }, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = opts.country === undefined ? undefined : parseCountry(opts.country, config);
        if (name === config.host) throw new UsageError(`${name} is this host ("host" in the config): run it from another host`);
        return withDatabase(config, async (db) => {
          const { rows } = await sql<{ host: string; live: string | null; silent: number }>`
            SELECT host, min(id) FILTER (WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => ${config.manager.staleWorkerSeconds}::float8)) AS live,
                   extract(epoch FROM now() - max(heartbeat_at))::float8 AS silent
              FROM workers GROUP BY host ORDER BY host`.execute(db);
          const known = rows.find((r) => r.host === name);
          if (!known)
            throw new LisError(
              'ERR_NO_SUCH_HOST',
              `no worker ever ran on a host named ${JSON.stringify(name)}; the hosts known: ${rows.map((r) => r.host).join(', ') || 'none'}`,
            );
          if (known.live)
            throw new LisError(
              'ERR_HOST_ALIVE',
              `host ${name} is alive: its worker ${known.live} beat ${Math.round(known.silent)}s ago. Stop its daemons first (a host that is not gone keeps its rows)`,
            );
          const goneHours = config.manager.staleWorkerSeconds / 3600;
          const [done] = await redownloadFromGoneHosts(db, goneHours, config.host, country, name);
          console.log(
            `${done?.rows ?? 0} rows of ${name}${country ? ` (${country})` : ''} sent back to download` +
              (done?.frontends ? `; its marks of frontends down cleared: ${done.frontends.join(', ')}` : ''),
          );
        });
      }),
    );
}
