import type { Command } from 'commander';
import { parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { closeDb } from '../db/connect.ts';
import { openDatabase } from '../db/open-database.ts';
import { serviceQueryBounds } from '../db/query-bounds.ts';
import { installStopSignals } from '../daemon/signals.ts';
import { exposedBindWarning } from '../util/bind-address.ts';
import { listenOrExplain } from '../util/listen.ts';
import { createStatusServer } from '../web/status-server.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/** `lis web`: the read-only status page, on loopback unless configured otherwise. */
export function addWebCommand(program: Command): void {
  program
    .command('web')
    .description('serve the status page: queue and throughput charts, failures, frontend sync, workers, image lookup (read-only)')
    .option('--port <n>', 'port (default: metrics.webPort, 8470; 0 picks a free one)')
    .option('--host <address>', 'address to bind (default: metrics.host, 127.0.0.1)')
    .action((opts: { port?: string; host?: string }, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const port = opts.port === undefined ? config.metrics.webPort : parseIntFlag('--port', opts.port, 0, 65535);
        const host = opts.host ?? config.metrics.host;
        // The daemons' bounds (database.connectTimeoutSeconds, queryTimeoutSeconds): a page's reads are index
        // lookups, but for its whole-table figures (a scan of live_images, at most once a minute), far inside 120 s.
        // A database that hangs is then a 503 saying so at the bound (and a clear error at start), not a page
        // that spins for ever; the bounded client ends the hung connection, so the next request works once it answers.
        const bounds = serviceQueryBounds(config);
        const db = await openDatabase(config, { bounds, readOnly: true });
        // try/finally: a port that cannot be bound must not leave the pool's connections holding the process open.
        try {
          const server = createStatusServer(db, config, host);
          await listenOrExplain(server, port, host, 'lis web');
          const address = server.address() as { port: number };
          console.log(`ImageSys status page at http://${host.includes(':') ? `[${host}]` : host}:${address.port}/`);
          const warning = exposedBindWarning('lis web', host);
          if (warning) console.warn(`warning: ${warning}`);
          const { controller } = installStopSignals(() => {});
          await new Promise<void>((resolve) => controller.signal.addEventListener('abort', () => resolve(), { once: true }));
          server.closeAllConnections();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        } finally {
          // Stopped while the server is frozen, the pool's idle connections would wait for its close for ever (closeDb).
          await closeDb(db, bounds.connectMs);
        }
      }),
    );
}
