import type { Command } from 'commander';
import { loadConfig } from '../config/load-config.ts';
import { closeDb, createDb, databaseUrl } from '../db/connect.ts';
import { connectionFailure, describeServer } from '../db/connection-failure.ts';
import { migrateToLatest, pendingMigrations } from '../db/migrate-schema.ts';
import { serviceQueryBounds } from '../db/query-bounds.ts';
import { embeddedStatus, embeddedUrl, lostDataDir, stopEmbedded } from '../db/embedded-server.ts';
import { currentUser, ownerOf } from '../db/embedded-folder-access.ts';
import { portInUse } from '../db/embedded-port.ts';
import { aheadNote, schemaStatus } from '../db/schema-version.ts';
import { assertServerFit, serverFit, type ServerFacts } from '../db/server-fit.ts';
import { LisError, errorMessage } from '../errors.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { configFileOf } from './global-options.ts';

const configOf = (command: Command) => loadConfig({ file: configFileOf(command) });

/** `lis db start|stop|status|migrate|url`: the database, embedded or configured. */
export function addDbCommand(program: Command): void {
  const db = program.command('db').description('manage the database (the embedded PostgreSQL unless a URL is configured)');

  db.command('start')
    .description('start the embedded PostgreSQL (initialising it on first use) and migrate')
    .action((_, command: Command) =>
      runCommand(async () => {
        const config = configOf(command);
        const url = await databaseUrl(config);
        const kdb = createDb(url, 1);
        try {
          await migrateToLatest(kdb);
        } finally {
          await closeDb(kdb, config.database.connectTimeoutSeconds * 1000);
        }
        const status = config.database.url ? null : embeddedStatus(config.database.embedded);
        const pid = status?.pid ? `pid ${status.pid}, ` : ''; // unknown when its data folder is closed to us (root's server)
        console.log(status ? `embedded PostgreSQL running (${pid}port ${status.port}, data ${status.dataDir})` : `using ${maskUrlPasswords(url)}`);
      }),
    );

  db.command('stop')
    .description('stop the embedded PostgreSQL')
    .action((_, command: Command) =>
      runCommand(async () => {
        const config = configOf(command);
        if (config.database.url) {
          console.log(`a database URL is configured (${maskUrlPasswords(config.database.url)}): nothing embedded to stop`);
          return;
        }
        console.log((await stopEmbedded(config.database.embedded)) ? 'embedded PostgreSQL stopped' : 'embedded PostgreSQL was not running');
      }),
    );

  db.command('status')
    .description(
      'say whether the database is up (the port it listens on), what server it is and whether ImageSys can run on it, and whether its schema is current; exit 3 when it is not reachable, 4 when ImageSys cannot run on it (too old, read-only, a transaction pooler)',
    )
    .action((_, command: Command) =>
      runCommand(async () => {
        const config = configOf(command);
        let url = config.database.url;
        if (!url) {
          const s = embeddedStatus(config.database.embedded);
          if (s.closed) {
            // Root's server, its data folder postgres's: no postmaster.pid to read, its port tells.
            s.running = await portInUse(s.port);
            const whose = `its data folder is ${ownerOf(s.dataDir) ?? "another user's"}, closed to ${currentUser()}`;
            console.log(`embedded PostgreSQL: ${s.running ? `running (port ${s.port})` : 'stopped'}; data ${s.dataDir} (${whose})`);
          } else {
            const lost = s.running || s.initialised ? null : lostDataDir(config.database.embedded);
            console.log(
              lost
                ? `embedded PostgreSQL: data folder lost: ${lost}`
                : `embedded PostgreSQL: ${s.running ? `running (pid ${s.pid}, port ${s.port})` : s.initialised ? 'stopped' : 'not initialised'}; data ${s.dataDir}`,
            );
          }
          if (!s.running) return 3;
          url = embeddedUrl(config.database.embedded, undefined, s.port);
        } else {
          console.log(`configured database: ${maskUrlPasswords(url)}`);
          url = await databaseUrl(config);
        }
        // Bounded as the services' connections are: a status asked of a server that hangs says so, in seconds.
        const bounds = serviceQueryBounds(config);
        const kdb = createDb(url, 1, undefined, bounds);
        try {
          // The checks every daemon, command that writes and lis db migrate make at start: a URL that reaches a replica
          // or a transaction pooler is said here, where an operator looks first, rather than only as their refusal.
          const { facts, unfit } = await serverFit(kdb, url, describeServer(url), { writes: true, connectMs: bounds.connectMs, queryMs: bounds.queryMs });
          console.log(serverLine(facts, unfit));
          const pending = await pendingMigrations(kdb);
          const ahead = pending.length === 0 ? aheadNote(await schemaStatus(kdb)) : null;
          console.log(
            pending.length === 0
              ? `schema: ${ahead ? `current (${ahead})` : 'current'}`
              : `schema: behind, ${pending.length} migrations to apply (npx lis db migrate): ${pending.join(', ')}`,
          );
          return unfit ? 4 : 0;
        } catch (error) {
          console.log(connectionFailure(url, error)?.message ?? `cannot query the database at ${describeServer(url)}: ${errorMessage(error)}`);
          return 3;
        } finally {
          // A server that stopped answering must not hold the status, once said, from exiting (closeDb).
          await closeDb(kdb, bounds.connectMs);
        }
      }),
    );

  db.command('migrate')
    .description(
      'bring the schema up to date: run once after installing or upgrading against a configured server (commands and the Interface only check it; with the embedded default they migrate themselves)',
    )
    .action((_, command: Command) =>
      runCommand(async () => {
        const config = configOf(command);
        const url = await databaseUrl(config);
        const kdb = createDb(url, 1);
        try {
          // An operator's server: too old, a replica or a transaction pooler is said as such, before any DDL fails on it.
          if (config.database.url !== null)
            await assertServerFit(kdb, url, describeServer(url), { writes: true }).catch((error: unknown) => {
              if (error instanceof LisError) throw error;
              throw (
                connectionFailure(url, error) ??
                new LisError('ERR_DATABASE', `cannot use the database at ${describeServer(url)}: ${errorMessage(error)}`, { cause: error })
              );
            });
          const results = await migrateToLatest(kdb);
          const ahead = results.length ? null : aheadNote(await schemaStatus(kdb));
          console.log(results.length ? results.map((r) => `applied ${r.migrationName}`).join('\n') : (ahead ?? 'schema is up to date'));
        } finally {
          await closeDb(kdb, config.database.connectTimeoutSeconds * 1000);
        }
      }),
    );

  db.command('url')
    .description('print the database URL (starting the embedded server if need be), e.g. for psql "$(npx lis db url)"')
    .action((_, command: Command) => runCommand(async () => console.log(await databaseUrl(configOf(command)))));
}

/**
 * `lis db status`'s line for the server: its version and that ImageSys can run on it, or why not, with the code its
 * daemons would refuse it with. Pure.
 */
export function serverLine(facts: ServerFacts, unfit: LisError | null): string {
  const server = `server: PostgreSQL ${facts.version}`;
  if (unfit) return `${server}: ImageSys cannot run on it (${unfit.code}): ${unfit.message}`;
  return `${server}, read-write, a server session per connection (ImageSys runs on it)`;
}
