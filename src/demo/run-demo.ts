import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import type { LisConfig, LisConfigInput } from '../config/config-schema.ts';
import { parseConfig } from '../config/load-config.ts';
import { closeDb, databaseUrl } from '../db/connect.ts';
import { openDatabase } from '../db/open-database.ts';
import { recreateDatabase } from '../db/recreate-database.ts';
import { embeddedStatus } from '../db/embedded-server.ts';
import { LisError } from '../errors.ts';
import { ImageSys } from '../interface/image-sys.ts';
import { addFrontend } from '../push/frontend-registry.ts';
import { FRONTEND_MARKER } from '../push/frontend-root-check.ts';
import { BAD_PATHS, startSourceServer } from './source-server.ts';
import { packagePath } from '../util/package-root.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';

const BIN = packagePath('bin');

export interface DemoOptions {
  /** The operator's config, as every command finds it: the demo uses its database server (the embedded one when none is configured). */
  config: LisConfig;
  /** The file it came from, for the commands the demo suggests; undefined when found the default way. */
  configFile?: string;
  dir: string;
  photos: number;
  /** The demo's own database on the server (dropped and made anew). */
  database: string;
  print: (line: string) => void;
}

/** Runs one daemon by hand to the end ("No rows gained"), its screen output kept in a file. */
function runStage(bin: string, configFile: string, logFile: string): Promise<{ code: number | null; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const out = fs.openSync(logFile, 'a');
    // The demo's config file names its own database; LIS_DATABASE_URL would override it with the server's default one.
    const env = { ...process.env, LIS_DATABASE_URL: undefined };
    const child = spawn(process.execPath, [path.join(BIN, bin), '--country', 'uk', '--config', configFile], { stdio: ['ignore', out, out], env });
    child.on('close', (code) => {
      fs.closeSync(out);
      resolve({ code, seconds: (performance.now() - started) / 1000 });
    });
  });
}

/**
 * Pure: the commands the demo ends with, to look at its database. LIS_DATABASE_URL wins over a config file's
 * `database.url`: with it set in the shell, they would show the server's other database, not the demo's.
 */
export function lookAroundLines(configFile: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const npx = env.LIS_DATABASE_URL ? 'env -u LIS_DATABASE_URL npx' : 'npx';
  return [
    `Look around: ${npx} lis_metrics --config ${configFile}`,
    `             ${npx} lis web --config ${configFile}   (status page, lookup by URL or hash)`,
  ];
}

/**
 * The whole system on one machine in a minute: the embedded PostgreSQL (a
 * database of its own), a local photo server with generated photos and a few
 * bad URLs, three local frontends, and every daemon run until the queue is
 * drained; then what went live, what failed and why, and how long each stage took.
 */
export async function runDemo({ config: base, configFile, dir, photos, database, print }: DemoOptions): Promise<number> {
  const root = path.resolve(dir);
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true });
  print(`Demo in ${root}`);
  const server = await startSourceServer();
  const configArg = configFile ? ` --config ${configFile}` : '';
  try {
    const serverUrl = await databaseUrl(base);
    print(
      `Database ${database} on ${base.database.url ? `the configured server ${maskUrlPasswords(serverUrl)}` : `the embedded PostgreSQL (port ${base.database.embedded.port}, data ${base.database.embedded.dataDir})`}`,
    );
    const url = await recreateDatabase(serverUrl, database);
    const input: LisConfigInput = {
      database: { url },
      stores: { originals: path.join(root, 'originals'), thumbnails: path.join(root, 'thumbnails') },
      log: { dir: path.join(root, 'log') },
      // The photo server is on loopback, which downloads refuse unless allowed.
      download: { allowAddresses: ['127.0.0.1:*'], timeouts: { totalSeconds: 20 } },
      // Give up at the first failure, so the demo ends with every row settled.
      queue: { maxAttempts: 1 },
      searchApi: { thumbnailBaseUrl: 'https://img.example.com/' },
      services: { runDir: path.join(root, 'run') },
    };
    fs.mkdirSync(path.join(root, 'log'), { recursive: true });
    const configFile = path.join(root, 'config.json');
    // It holds the database's password (the embedded server's, or the configured one's): its owner's only, as
    // ./var/pg.password is. The folder (./var/demo) is open to all.
    fs.writeFileSync(configFile, `${JSON.stringify(input, null, 2)}\n`, { mode: 0o600 });
    const config = parseConfig(input, {}, root, configFile);
    // A database of its own, made just now: the demo installs its schema (a daemon would only check it).
    const db = await openDatabase(config, { migrate: true });
    try {
      for (const name of ['n1', 'n2', 'n3']) {
        fs.mkdirSync(path.join(root, 'frontends', name), { recursive: true });
        await addFrontend(db, name, path.join(root, 'frontends', name));
      }
      const images = await ImageSys.open({ config });
      const good = Array.from({ length: photos }, (_, i) => `${server.base}/photos/${i + 1}.jpg`);
      const bad = [...Object.keys(BAD_PATHS).map((p) => `${server.base}${p}`), 'http://10.20.30.40/private-network.jpg'];
      await images.enqueue(good, { country: 'uk', datasourceId: 16 });
      await images.enqueue(bad, { country: 'uk', datasourceId: 17 });
      await images.close();
      print(`Queued ${good.length} photos and ${bad.length} bad URLs for UK; frontends n1, n2, n3 under ${path.join(root, 'frontends')}`);

      const stages: Array<[string, string]> = [
        ['download', 'lis_downloadd'],
        ['thumbnail', 'lis_thumbnaild'],
        ['push', 'lis_pusherd'],
      ];
      const timings: string[] = [];
      for (const [stage, bin] of stages) {
        const result = await runStage(bin, configFile, path.join(root, 'log', 'demo-screen.log'));
        if (result.code !== 0) throw new LisError('ERR_DEMO', `${bin} exited ${result.code}: see ${path.join(root, 'log')}`);
        const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE stage <> ${stage} OR state <> 'waiting'`.execute(db);
        timings.push(`${stage} ${result.seconds.toFixed(1)}s`);
        print(`  ${bin.padEnd(15)} done in ${result.seconds.toFixed(1)}s (${rows[0].n} rows past ${stage} or settled)`);
      }

      const { rows: states } = await sql<{ stage: string; state: string; n: string }>`
        SELECT stage, state, count(*) AS n FROM live_images GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
      const { rows: failures } = await sql<{ image_url: string; last_error_class: string; last_error: string }>`
        SELECT image_url, last_error_class, last_error FROM live_images WHERE state = 'failed' ORDER BY image_url`.execute(db);
      const live = Number(states.find((s) => s.stage === 'live')?.n ?? 0);
      const files = (name: string) => {
        let n = 0;
        // Thumbnails, not the root's own marker.
        const walk = (d: string) =>
          fs.readdirSync(d, { withFileTypes: true }).forEach((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : e.name !== FRONTEND_MARKER && n++));
        const dirPath = path.join(root, 'frontends', name);
        if (fs.existsSync(dirPath)) walk(dirPath);
        return n;
      };
      print('');
      print(`Live: ${live} of ${good.length} photos, on n1 (${files('n1')} files), n2 (${files('n2')}), n3 (${files('n3')})`);
      print(`Rows: ${states.map((s) => `${s.stage}/${s.state} ${s.n}`).join(', ')}`);
      print(`Failed (${failures.length}), as expected for the bad URLs:`);
      for (const f of failures) print(`  ${f.last_error_class.padEnd(16)} ${f.image_url.replace(server.base, '')}: ${f.last_error}`);
      print(`Stage times: ${timings.join(', ')}`);
      print('');
      for (const line of lookAroundLines(path.relative(process.cwd(), configFile))) print(line);
      const expectedFailures = bad.length;
      return live === good.length && failures.length === expectedFailures ? 0 : 1;
    } finally {
      await closeDb(db, config.database.connectTimeoutSeconds * 1000);
    }
  } finally {
    await server.close();
    // The server outlives the demo (the next run, `lis web`, psql need it): say so, and how to stop it.
    if (!base.database.url && embeddedStatus(base.database.embedded).running) {
      print(
        `The embedded PostgreSQL is still running (port ${base.database.embedded.port}, data ${base.database.embedded.dataDir}): stop it with npx lis db stop${configArg}`,
      );
    } else if (base.database.url) {
      print(`Nothing left running; the demo's database ${database} stays on the configured server (drop it with: DROP DATABASE ${database})`);
    }
  }
}
