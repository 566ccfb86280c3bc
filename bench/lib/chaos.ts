// The chaos run: the whole system on two simulated hosts against one
// PostgreSQL, while daemons are SIGKILLed and restarted, a frontend goes away
// for a while and PostgreSQL restarts; then every promise is checked from the
// table and the disks. Used by bench/chaos.ts and test/chaos.test.ts.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { STORE_MARKER } from '../../src/daemon/store-check.ts';
import { CLOCK_FILE } from '../../src/push/frontend-root-check.ts';
import type { LisConfigInput } from '../../src/config/config-schema.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { createDb, databaseUrl, type Db } from '../../src/db/connect.ts';
import { migrateToLatest } from '../../src/db/migrate-schema.ts';
import { dropDatabase, recreateDatabase } from '../../src/db/recreate-database.ts';
import { ensureEmbeddedRunning, stopEmbedded } from '../../src/db/embedded-server.ts';
import { FAILURE_REASONS } from '../../src/failure/failure-reasons.ts';
import { addFrontend } from '../../src/push/frontend-registry.ts';
import { thumbnailFilesOf, type ImageData } from '../../src/store/image-data.ts';
import { waitFor } from '../../test/helpers/processes.ts';
import { RsyncDaemon } from '../../test/helpers/rsync-daemons.ts';
import { BAD_KINDS, startChaosSource, type BadKind } from './chaos-source.ts';
import { tcpClientPorts } from './client-ports.ts';
import { fillUp } from './fill-up.ts';

// fileURLToPath, not URL.pathname: a checkout under a folder with a space would read as my%20clone.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ChaosOptions {
  /** URLs in all; a fifth of them bad. */
  urls: number;
  countries: string[];
  datasources: number[];
  /** Gives up (and fails the checks) if the queue has not drained by then. */
  limitSeconds: number;
  killEverySeconds: number;
  /** n2's rsync daemon is stopped this long after the start, for this long. */
  frontendDown: { atSeconds: number; forSeconds: number };
  /** hosta's thumbnail store (a tmpfs) is filled to ENOSPC at this time, and emptied this long after (null: not). */
  storeFull?: { atSeconds: number; forSeconds: number } | null;
  /**
   * Runs bad_datasources every 3 s, sensitive (30 % over at least 10 rows in 1 h, the shortest window the
   * check takes): with only source faults counted, the fifth of bad URLs stays under it, so a disabled
   * datasource means our outages were charged to it.
   */
  datasourceCheck?: boolean;
  /** Restart the embedded PostgreSQL this long after the start (null: not; skipped with LIS_DATABASE_URL). */
  restartPostgresAtSeconds: number | null;
  /**
   * An embedded server of the run's own (its data folder and port) instead of the configured one, started when
   * needed and left running (the caller stops it): the test suite's, so that restarting it stops no other test's
   * database and the run can go side by side with them. LIS_DATABASE_URL is then not read.
   */
  embedded?: { dataDir: string; port: number };
  dir: string;
  print: (line: string) => void;
}

export interface ChaosCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ChaosResult {
  figures: Record<string, string | number>;
  checks: ChaosCheck[];
}

interface Member {
  /** Set just before we kill it, so that an exit we did not cause counts as a crash. */
  killing?: boolean;
  name: string;
  host: string;
  bin: string;
  args: string[];
  configFile: string;
  child: ChildProcess | null;
  starts: number;
}

interface Kill {
  at: number;
  member: string;
  workerId: string;
  held: number;
  stage: boolean;
}

const HOSTS = ['hosta', 'hostb'];
/** Several heartbeats (1 s) long, so that a worker slowed by a loaded machine is not taken for dead. */
const STALE_SECONDS = 8;
const STAGE_BINS = ['lis_downloadd', 'lis_thumbnaild', 'lis_pusherd'];

/** The daemons' environment: without LIS_DATABASE_URL, which would win over the chaos database in their config. */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.LIS_DATABASE_URL;
  return env;
}

function start(member: Member, logDir: string): void {
  const out = fs.openSync(path.join(logDir, `${member.name.replaceAll('/', '-')}.out`), 'a');
  member.child = spawn(process.execPath, [path.join(ROOT, 'bin', member.bin), ...member.args, '--config', member.configFile], {
    stdio: ['ignore', out, out],
    env: childEnv(),
  });
  fs.closeSync(out);
  member.starts++;
}

/**
 * The store pauses in daemons' logs (lines `<Scope>::store[<pid>]:<CC> ...`), per process: each process that paused
 * must have resumed by itself, unless it was killed while paused (`killedPids`), which is the kill's doing, not the
 * guard's. Counting lines alone, a run whose paused daemons were all killed before the store had room again read
 * "2 pauses, 0 resumes" and failed, though every row went live. Pure.
 */
export function pauseAccount(log: string, killedPids: Set<number>): { pauses: number; resumes: number; killedPaused: number; unresumed: number[] } {
  const last = new Map<number, 'paused' | 'resumed'>();
  let pauses = 0;
  let resumes = 0;
  for (const line of log.split('\n')) {
    const m = /::store\[(\d+)\][^ ]* (Store not (?:writable|readable), pausing|Store (?:writable|readable) again, resuming)/.exec(line);
    if (!m) continue;
    const paused = m[2].endsWith('pausing');
    if (paused) pauses++;
    else resumes++;
    last.set(Number(m[1]), paused ? 'paused' : 'resumed');
  }
  const stillPaused = [...last].filter(([, state]) => state === 'paused').map(([pid]) => pid);
  return {
    pauses,
    resumes,
    killedPaused: stillPaused.filter((pid) => killedPids.has(pid)).length,
    unresumed: stillPaused.filter((pid) => !killedPids.has(pid)),
  };
}

/**
 * What a crashed member left: the end of its stdout/stderr (an uncaught error's stack goes there) and of its log
 * files. The run's folder is removed after a test, so a crash in CI is explained in the report or not at all.
 */
function crashEvidence(dir: string, member: Member): string {
  const tail = (file: string, lines: number) => {
    try {
      return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines);
    } catch {
      return [];
    }
  };
  // Its logs: <component>.<country>-<date>.log, or <component>-<date>.log for one of no country (and .N rotated).
  const component = member.bin.replace(/^lis_/, '');
  const country = member.args.includes('--country') ? member.args[member.args.indexOf('--country') + 1] : null;
  const prefix = country ? `${component}.${country}-` : `${component}-`;
  const logDir = path.join(dir, member.host, 'log');
  const logs = fs.existsSync(logDir)
    ? fs
        .readdirSync(logDir)
        .filter((f) => f.startsWith(prefix) && /\d{4}-\d{2}-\d{2}\.log/.test(f))
        .sort()
    : [];
  const lines = [
    ...tail(path.join(dir, 'out', `${member.name.replaceAll('/', '-')}.out`), 60).map((l) => `  out| ${l}`),
    ...logs.flatMap((f) => tail(path.join(logDir, f), 12).map((l) => `  ${f}| ${l}`)),
  ];
  return lines.length ? `\n${lines.join('\n')}\n` : '';
}

async function stopAll(members: Member[]): Promise<void> {
  await Promise.all(
    members.map(
      (m) =>
        new Promise<void>((resolve) => {
          const child = m.child;
          if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
          child.once('close', () => (clearTimeout(timer), resolve()));
          child.kill('SIGTERM');
        }),
    ),
  );
}

function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

/** `a 3, b 1`: how often each value occurs. */
function countBy(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts]
    .sort()
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
}

const ourClasses = () =>
  Object.entries(FAILURE_REASONS)
    .filter(([, r]) => r.owner === 'ours')
    .map(([c]) => c);

const isTemp = (file: string) => /\.tmp-\d+-[0-9a-f]+$/.test(file) || /\/\.[^/]+\.[A-Za-z0-9]{6}$/.test(file);

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  // What a run starts (frontends, the source, the daemons, the tmpfs) is stopped even when the run throws
  // half-way; on the normal road it stops them itself, and a second stop is harmless.
  const cleanups: Array<() => unknown> = [];
  try {
    return await runChaosOnce(options, cleanups);
  } finally {
    for (const cleanup of cleanups.reverse())
      await Promise.resolve()
        .then(cleanup)
        .catch(() => {});
  }
}

async function runChaosOnce(options: ChaosOptions, cleanups: Array<() => unknown>): Promise<ChaosResult> {
  const { print } = options;
  const dir = path.resolve(options.dir);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, 'out'), { recursive: true });
  const base = options.embedded ? parseConfig({ database: { embedded: options.embedded } }, childEnv()) : parseConfig({}, process.env);
  const embedded = !base.database.url;
  const serverUrl = await databaseUrl(base);
  const dbName = `lis_chaos_${crypto.randomBytes(4).toString('hex')}`;
  const url = new URL(await recreateDatabase(serverUrl, dbName));
  const db: Db = createDb(url.toString(), 4);
  await migrateToLatest(db);
  // Instrumentation of this run only: every stage change of every row, to prove none happens twice.
  await sql`
    CREATE TABLE chaos_moves (id bigint, from_stage text, to_stage text, at timestamptz DEFAULT clock_timestamp());
    CREATE FUNCTION chaos_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO chaos_moves (id, from_stage, to_stage) VALUES (NEW.id, OLD.stage, NEW.stage); RETURN NULL; END $$;
    CREATE TRIGGER chaos_audit AFTER UPDATE ON live_images FOR EACH ROW
      WHEN (OLD.stage IS DISTINCT FROM NEW.stage) EXECUTE FUNCTION chaos_audit();`.execute(db);

  const source = await startChaosSource();
  cleanups.push(() => source.close());
  const frontends: RsyncDaemon[] = [];
  for (const name of ['n1', 'n2', 'n3']) {
    const daemon = await RsyncDaemon.start(path.join(dir, 'frontends', name));
    frontends.push(daemon);
    cleanups.push(() => daemon.stop());
    await addFrontend(db, name, daemon.url());
  }

  // The URLs: a fifth bad, spread over countries, datasources and bad kinds.
  const kinds = Object.keys(BAD_KINDS) as BadKind[];
  const expected = new Map<string, string | null>();
  const perCountry = new Map<string, Array<{ url: string; ds: number }>>();
  for (let i = 0; i < options.urls; i++) {
    const country = options.countries[i % options.countries.length];
    const ds = options.datasources[Math.floor(i / options.countries.length) % options.datasources.length];
    let url: string;
    if (i % 5 === 4) {
      const kind = kinds[Math.floor(i / 5) % kinds.length];
      url = kind === 'refused' ? `http://10.${(i >> 8) & 255}.${i & 255}.7/${i}.jpg` : `${kind === 'slow' ? source.slowBase : source.base}/${kind}/${i}.jpg`;
      expected.set(`${country} ${url}`, BAD_KINDS[kind]);
    } else {
      url = `${source.base}/ok/${i}.jpg`;
      expected.set(`${country} ${url}`, null);
    }
    perCountry.set(country, [...(perCountry.get(country) ?? []), { url, ds }]);
  }
  for (const [country, rows] of perCountry) {
    await sql`INSERT INTO live_images (country, datasource_id, image_url)
              SELECT ${country}, d, u FROM unnest(${rows.map((r) => r.ds)}::int[], ${rows.map((r) => r.url)}::text[]) AS v(d, u)`.execute(db);
  }

  // Two hosts, each with its own stores and one daemon of each stage per country; one manager.
  const common: LisConfigInput = {
    database: { url: url.toString(), poolSize: 3 },
    queue: {
      chunkSize: 50,
      maxAttempts: 2,
      heartbeatSeconds: 1,
      pollSeconds: 1,
      oursRetrySeconds: 2,
      backoff: { baseSeconds: 1, maxSeconds: 3, jitter: 0.25 },
    },
    download: {
      allowAddresses: ['127.0.0.1:*', '127.0.0.2:*'],
      timeouts: { connectSeconds: 5, firstByteSeconds: 5, totalSeconds: 5 },
      maxBytes: 1024 * 1024,
      stopGraceSeconds: 2,
    },
    manager: {
      staleWorkerSeconds: STALE_SECONDS,
      schedule: { stuck_jobs: '*/2 * * * * *', bad_retry_jobs: '*/10 * * * * *', bad_datasources: options.datasourceCheck ? '*/3 * * * * *' : null },
      // A window shorter than the frontend outage: if our outage were charged, the check would see nothing else.
      ...(options.datasourceCheck
        ? { badDatasource: { windowHours: (options.frontendDown.forSeconds * 0.75) / 3600, minAttempts: 10, failureRate: 0.6 } }
        : {}),
    },
  };
  // hosta's thumbnail store on a file system of its own that can be filled (a tmpfs; root only).
  const fullStore = path.join(dir, 'hosta', 'thumbnails');
  let storeMounted = false;
  let storeOutage = options.storeFull ? 'not run' : 'none';
  if (options.storeFull) {
    fs.mkdirSync(fullStore, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', fullStore], { stdio: 'ignore' });
      cleanups.push(() => execFileSync('umount', ['-l', fullStore], { stdio: 'ignore' }));
      storeMounted = true;
    } catch (error) {
      storeOutage = `skipped (cannot mount a tmpfs: ${(error as Error).message.split('\n')[0]})`;
    }
  }
  const filler = path.join(fullStore, 'chaos-filler');
  let storeState: 'up' | 'full' | 'back' = storeMounted ? 'up' : 'back';
  let storeFullAt = 0;
  const members: Member[] = [];
  cleanups.push(() => stopAll(members));
  for (const host of HOSTS) {
    const configFile = path.join(dir, `${host}.json`);
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        ...common,
        host,
        // A small minimum (the tmpfs is 64 MB) and quick checks, so the pause and the resume happen within the run.
        stores: {
          originals: path.join(dir, host, 'originals'),
          thumbnails: path.join(dir, host, 'thumbnails'),
          minFreeBytes: 1024 * 1024,
          minFreePercent: 0,
          checkSeconds: 1,
          retryMaxSeconds: 2,
        },
        log: { dir: path.join(dir, host, 'log') },
        services: { runDir: path.join(dir, host, 'run') },
      }),
    );
    for (const country of options.countries) {
      for (const bin of STAGE_BINS)
        members.push({ name: `${host}/${country}/${bin}`, host, bin, args: ['--country', country, '--service'], configFile, child: null, starts: 0 });
    }
  }
  members.push({
    name: 'hosta/managerd',
    host: 'hosta',
    bin: 'lis_managerd',
    args: ['--service'],
    configFile: path.join(dir, 'hosta.json'),
    child: null,
    starts: 0,
  });
  for (const m of members) start(m, path.join(dir, 'out'));
  print(
    `chaos: ${options.urls} URLs (${[...expected.values()].filter((v) => v).length} bad) over ${options.countries.join(', ')}, ${members.length} processes on ${HOSTS.length} hosts, 3 rsync frontends`,
  );

  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  const kills: Kill[] = [];
  const crashes: string[] = [];
  /**
   * The server pids of the killed process's database sessions, found by their client ports (read from /proc while
   * it was stopped: a live connection's port is its own, to the one server). Read before the kill: a port freed by
   * the kill is soon another process's (after a restart of the server every daemon reconnects), so sessions are
   * followed by their server pid, not their port. None when the server cannot be asked (down: it has no sessions).
   */
  const sessionsOf = async (ports: number[]): Promise<number[]> =>
    ports.length === 0
      ? []
      : (
          await sql<{ pid: number }>`SELECT pid FROM pg_stat_activity WHERE client_port = ANY(${ports}::int[])`
            .execute(db)
            .catch(() => ({ rows: [] as Array<{ pid: number }> }))
        ).rows.map((r) => r.pid);
  /**
   * Records a kill with the rows its worker holds, counted once the killed process's database `sessions` have
   * ended. A statement it had sent just before the kill (a claim, a finish, a give-back) still runs in its server
   * session and commits; counted as soon as the process was gone, it was left out, and the manager's release of
   * the dead worker's rows (the check below) found more or fewer. Counted well within STALE_SECONDS, before the
   * manager may release them; while the server is down (no sessions then) the count waits for it to be back.
   */
  const countHeldOnceGone = async (victim: Member, workerId: string, sessions: number[]) => {
    const ended = async () =>
      sessions.length === 0 ||
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY(${sessions}::int[])`
        .execute(db)
        .then(({ rows }) => rows[0].n === 0)
        .catch(() => true)); // the server is down: every session of the killed process with it
    await waitFor(ended, (STALE_SECONDS / 2) * 1000, `the database sessions of killed ${victim.name} to end`).catch((error: Error) =>
      print(`  ${error.message}; its held rows counted all the same`),
    );
    let held = 0;
    await waitFor(
      async () =>
        sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE locked_by = ${workerId}`
          .execute(db)
          .then(({ rows }) => ((held = Number(rows[0].n)), true))
          .catch(() => false),
      60_000,
      `the database back, to count the rows killed ${victim.name} held`,
    );
    kills.push({ at: elapsed(), member: victim.name, workerId, held, stage: victim.bin !== 'lis_managerd' });
  };
  let frontendOutage = 'none';
  let pgRestart = 'none';
  let drainedAt: number | null = null;
  let nextKill = options.killEverySeconds;
  let frontendState: 'up' | 'down' | 'back' = 'up';
  let pgDone = options.restartPostgresAtSeconds === null || !embedded;
  if (options.restartPostgresAtSeconds !== null && !embedded) pgRestart = 'skipped (LIS_DATABASE_URL set: not ours to restart)';

  while (elapsed() < options.limitSeconds) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const t = elapsed();
    let status: { waiting: number; locked: number; downloaded: number };
    try {
      const { rows } = await sql<{ waiting: string; locked: string; downloaded: string }>`
        SELECT count(*) FILTER (WHERE state = 'waiting') AS waiting, count(*) FILTER (WHERE locked_by IS NOT NULL) AS locked,
               count(*) FILTER (WHERE stage <> 'download') AS downloaded FROM live_images`.execute(db);
      status = { waiting: Number(rows[0].waiting), locked: Number(rows[0].locked), downloaded: Number(rows[0].downloaded) };
    } catch {
      continue; // PostgreSQL is restarting.
    }
    // A daemon that exits by itself has crashed: record it, and restart it as its supervisor would.
    for (const m of members) {
      if (m.child && !m.killing && (m.child.exitCode !== null || m.child.signalCode !== null)) {
        crashes.push(`${m.name} exited ${m.child.exitCode ?? m.child.signalCode} at ${t.toFixed(0)}s${crashEvidence(dir, m)}`);
        start(m, path.join(dir, 'out'));
      }
    }
    const chaosOver = frontendState === 'back' && pgDone && storeState === 'back';
    // Filled once the thumbnail daemons have work (on a loaded machine they may take long to start).
    if (storeState === 'up' && t >= options.storeFull!.atSeconds && status.downloaded > 0) {
      fillUp(filler);
      storeFullAt = t;
      storeState = 'full';
      print(`  ${t.toFixed(0)}s: hosta's thumbnail store full`);
    } else if (storeState === 'full' && t >= storeFullAt + options.storeFull!.forSeconds) {
      fs.rmSync(filler);
      storeState = 'back';
      storeOutage = `${options.storeFull!.forSeconds}s`;
      print(`  ${t.toFixed(0)}s: hosta's thumbnail store has space again`);
    }
    if (status.waiting === 0 && status.locked === 0 && chaosOver) {
      drainedAt = t;
      break;
    }
    if (frontendState === 'up' && t >= options.frontendDown.atSeconds) {
      await frontends[1].stop();
      frontendState = 'down';
      print(`  ${t.toFixed(0)}s: frontend n2 stopped`);
    } else if (frontendState === 'down' && t >= options.frontendDown.atSeconds + options.frontendDown.forSeconds) {
      await frontends[1].start();
      frontendState = 'back';
      frontendOutage = `${options.frontendDown.forSeconds}s`;
      print(`  ${t.toFixed(0)}s: frontend n2 back`);
    }
    if (!pgDone && t >= options.restartPostgresAtSeconds!) {
      const stoppedAt = performance.now();
      await stopEmbedded(base.database.embedded);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await ensureEmbeddedRunning(base.database.embedded);
      pgRestart = `down ${((performance.now() - stoppedAt) / 1000).toFixed(1)}s at ${t.toFixed(0)}s`;
      pgDone = true;
      print(`  ${t.toFixed(0)}s: PostgreSQL restarted`);
      continue;
    }
    // Kill while there is work, so that kills land mid-chunk.
    if (t >= nextKill && status.waiting > 0)
      try {
        nextKill = t + options.killEverySeconds;
        const candidates = members.filter((m) => m.child && m.child.exitCode === null && m.child.signalCode === null);
        const victim = candidates[crypto.randomInt(candidates.length)];
        // Worker ids are host:pid:random; the live one of this process is the one not stopped.
        const registered = await db
          .selectFrom('workers')
          .select('id')
          .where('host', '=', victim.host)
          .where('pid', '=', victim.child!.pid!)
          .where('stopped_at', 'is', null)
          .orderBy('started_at', 'desc')
          .executeTakeFirst()
          .catch(() => undefined);
        if (!registered) continue; // still starting: it holds nothing yet; try another next time.
        const workerId = registered.id;
        const child = victim.child!;
        // Exited by itself during the query: its 'close' has come and gone (a wait for it would never end); the
        // crash check above records and restarts it next round.
        if (child.exitCode !== null || child.signalCode !== null) continue;
        victim.killing = true;
        const closed = new Promise((resolve) => child.once('close', resolve));
        // Stopped first, so that it opens no connection between the reading of its sockets and its death.
        child.kill('SIGSTOP');
        const sessions = await sessionsOf(tcpClientPorts(child.pid!));
        child.kill('SIGKILL');
        await closed;
        victim.killing = false;
        try {
          await countHeldOnceGone(victim, workerId, sessions);
        } finally {
          start(victim, path.join(dir, 'out'));
        }
      } catch (error) {
        print(`  ${t.toFixed(0)}s: kill round skipped: ${(error as Error).message}`);
      }
  }
  const drainSeconds = drainedAt;
  for (const m of members) m.killing = true;
  print(drainSeconds === null ? `  not drained after ${options.limitSeconds}s` : `  drained after ${drainSeconds.toFixed(1)}s`);
  // A stage daemon killed holding nothing (the drain did not wait for it) is released, and recorded, only once its
  // heartbeat is stale (STALE_SECONDS) and stuck_jobs runs next: the check below reads those records, so they are
  // waited for, within a minute more; one that never comes is the check's to report, naming the worker.
  const killedIds = kills.filter((k) => k.stage).map((k) => k.workerId);
  if (killedIds.length)
    await waitFor(
      async () => {
        const rows = await db
          .selectFrom('manager_events')
          .select('subject')
          .distinct()
          .where('check_name', '=', 'stuck_jobs')
          .where('subject', 'in', killedIds)
          .execute()
          .catch(() => []);
        return rows.length === new Set(killedIds).size;
      },
      (STALE_SECONDS + 60) * 1000,
      "the manager's stuck_jobs record of every killed stage daemon",
    ).catch((error: Error) => print(`  ${error.message}`));
  await stopAll(members);
  if (storeState === 'full') fs.rmSync(filler);

  // Partial files the kills left, before the system's own cleanup (fs_check) runs.
  const allFiles = () => [
    ...HOSTS.flatMap((h) => walk(path.join(dir, h, 'originals')).concat(walk(path.join(dir, h, 'thumbnails')))),
    ...frontends.flatMap((f) => walk(f.moduleDir)),
  ];
  const partialBefore = allFiles().filter(isTemp).length;
  for (const host of HOSTS) {
    for (const country of options.countries) {
      const out = path.join(dir, 'out', `fs_check-${host}-${country}.out`);
      await new Promise<void>((resolve, reject) => {
        // stderr to the file too: a pipe nobody reads stops the child once it fills.
        const fd = fs.openSync(out, 'a');
        const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'lis_cron_frontend'), '--fs_check', '--country', country], {
          env: { ...childEnv(), LIS_CONFIG: path.join(dir, `${host}.json`) },
          stdio: ['ignore', fd, fd],
        });
        fs.closeSync(fd);
        // Bounded: one that hangs fails the run naming itself, rather than holding it until the caller's timeout.
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`lis_cron_frontend --fs_check --country ${country} on ${host} still running after 120 s (its output: ${out})`));
        }, 120_000);
        child.on('close', () => (clearTimeout(timer), resolve()));
      });
    }
  }

  // Checks, from the table and the disks.
  const checks: ChaosCheck[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  const rows = (
    await sql<{
      id: string;
      country: string;
      image_url: string;
      image_hash: string;
      stage: string;
      state: string;
      last_error_class: string | null;
      image_data: ImageData | null;
      store_host: string;
    }>`
    SELECT id, country, image_url, image_hash, stage, state, last_error_class, image_data, store_host FROM live_images`.execute(db)
  ).rows;
  const good = rows.filter((r) => expected.get(`${r.country} ${r.image_url}`) === null);
  const bad = rows.filter((r) => expected.get(`${r.country} ${r.image_url}`));
  check(
    'no daemon crashed (every exit was a kill of ours)',
    crashes.length === 0,
    crashes.length ? crashes.slice(0, 5).join('; ') : `${members.length} processes, ${kills.length} kills, 0 crashes`,
  );
  check('drained in time', drainSeconds !== null, drainSeconds === null ? `not drained in ${options.limitSeconds}s` : `${drainSeconds.toFixed(1)}s`);

  const notLive = good.filter((r) => r.stage !== 'live' || r.state !== 'done');
  check(
    'every good URL is live',
    notLive.length === 0 && good.length === [...expected.values()].filter((v) => v === null).length,
    notLive.length
      ? `${notLive.length} not live, e.g. ${notLive
          .slice(0, 3)
          .map((r) => `${r.image_url} ${r.stage}/${r.state} ${r.last_error_class}`)
          .join('; ')}`
      : `${good.length} live`,
  );
  let missing = 0;
  let differing = 0;
  const expectedFiles = new Set<string>();
  for (const r of good) {
    for (const f of thumbnailFilesOf(r.image_data)) {
      expectedFiles.add(f);
      const copies = frontends.map((fe) => path.join(fe.moduleDir, f));
      if (!copies.every((c) => fs.existsSync(c))) {
        missing++;
        continue;
      }
      const first = fs.readFileSync(copies[0]);
      if (!copies.slice(1).every((c) => fs.readFileSync(c).equals(first))) differing++;
    }
  }
  const presetsPerRow = good.length ? thumbnailFilesOf(good[0].image_data).length : 0;
  check(
    'every preset on every frontend, byte-identical',
    missing === 0 && differing === 0 && presetsPerRow >= 3,
    `${expectedFiles.size} files x 3 frontends; ${missing} missing, ${differing} differing; ${presetsPerRow} files per image`,
  );

  const wrong = bad.filter((r) => r.state !== 'failed' || r.last_error_class !== expected.get(`${r.country} ${r.image_url}`));
  const strayFailures = good.filter((r) => r.state === 'failed' || r.state === 'parked');
  check(
    'every bad URL failed with the right reason, nothing else failed',
    wrong.length === 0 && strayFailures.length === 0 && bad.length === [...expected.values()].filter((v) => v).length,
    wrong.length || strayFailures.length
      ? `${wrong.length} wrong, e.g. ${wrong
          .slice(0, 3)
          .map((r) => `${r.image_url}: ${r.state} ${r.last_error_class} (expected ${expected.get(`${r.country} ${r.image_url}`)})`)
          .join('; ')}; ${strayFailures.length} good ones failed`
      : `${bad.length} failed as expected: ${countBy(bad.map((r) => r.last_error_class ?? '?'))}`,
  );

  const { rows: twice } = await sql<{ id: string; from_stage: string; to_stage: string; n: string }>`
    SELECT id, from_stage, to_stage, count(*) AS n FROM chaos_moves GROUP BY 1, 2, 3 HAVING count(*) > 1`.execute(db);
  const { rows: moves } = await sql<{ n: string }>`SELECT count(*) AS n FROM chaos_moves`.execute(db);
  check(
    'no row processed to completion twice',
    twice.length === 0,
    twice.length
      ? `${twice.length} repeated moves, e.g. ${twice
          .slice(0, 3)
          .map((m) => `row ${m.id} ${m.from_stage}->${m.to_stage} x${m.n}`)
          .join('; ')}`
      : `${moves[0].n} stage moves, each once`,
  );

  const frontendFiles = frontends.flatMap((fe) => walk(fe.moduleDir).map((f) => path.relative(fe.moduleDir, f)));
  // The clock file fs_check writes at each frontend's root (readFrontendClock) is fs_check's, not a stray file.
  const frontendStray = frontendFiles.filter((f) => f !== CLOCK_FILE && (isTemp(`/${f}`) || !expectedFiles.has(f)));
  const storeStray: string[] = [];
  // Each store's marker (its top, made by a daemon's first check) is the store's, not a stray file.
  const marker = (f: string) =>
    path.basename(f) === STORE_MARKER && HOSTS.some((h) => ['thumbnails', 'originals'].some((s) => path.dirname(f) === path.join(dir, h, s)));
  for (const host of HOSTS) {
    const mine = rows.filter((r) => r.store_host === host);
    const thumbs = new Set(mine.flatMap((r) => thumbnailFilesOf(r.image_data)));
    const originals = new Set(mine.map((r) => r.image_hash));
    for (const f of walk(path.join(dir, host, 'thumbnails')))
      if (!marker(f) && (isTemp(f) || !thumbs.has(path.relative(path.join(dir, host, 'thumbnails'), f)))) storeStray.push(f);
    for (const f of walk(path.join(dir, host, 'originals'))) if (!marker(f) && (isTemp(f) || !originals.has(path.basename(f)))) storeStray.push(f);
  }
  check(
    'no orphan or partial file on any frontend or in the stores',
    frontendStray.length === 0 && storeStray.length === 0,
    `${partialBefore} partial files left by kills were cleaned by lis_cron_frontend --fs_check; after it: ${frontendStray.length} stray on frontends, ${storeStray.length} in the stores${frontendStray.length + storeStray.length ? `, e.g. ${[...frontendStray, ...storeStray].slice(0, 3).join(', ')}` : ''}`,
  );

  const events = await db.selectFrom('manager_events').select(['subject', 'rows']).where('check_name', '=', 'stuck_jobs').execute();
  const bySubject = new Map(events.map((e) => [e.subject, e.rows]));
  const stageKills = kills.filter((k) => k.stage);
  const mismatched = stageKills.filter((k) => bySubject.get(k.workerId) !== k.held);
  const extra = events.filter((e) => !stageKills.some((k) => k.workerId === e.subject) && e.rows > 0);
  check(
    "the manager's stuck-job figures match what was killed",
    mismatched.length === 0 && extra.length === 0,
    `${stageKills.length} stage daemons killed holding ${stageKills.reduce((n, k) => n + k.held, 0)} rows; manager released ${events.reduce((n, e) => n + e.rows, 0)} rows from ${events.length} dead workers` +
      (mismatched.length
        ? `; mismatched: ${mismatched
            .slice(0, 3)
            .map((k) => `${k.workerId} held ${k.held}, released ${bySubject.get(k.workerId) ?? 'nothing'}`)
            .join('; ')}`
        : '') +
      (extra.length ? `; released from workers not killed: ${extra.map((e) => `${e.subject} ${e.rows}`).join(', ')}` : ''),
  );

  const { rows: disabled } = await sql<{
    name: string;
  }>`SELECT country || ' ' || datasource_id || ': ' || coalesce(disabled_reason, '') AS name FROM datasources WHERE NOT enabled`.execute(db);
  check(
    'no datasource disabled (our outages are not theirs)',
    disabled.length === 0,
    disabled.length
      ? disabled.map((d) => d.name).join('; ')
      : `none disabled; bad_datasources ${options.datasourceCheck ? 'ran every 3 s at a 60 % threshold over a window shorter than the frontend outage' : 'off'}`,
  );
  const { rows: charged } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM live_images WHERE last_error_class = ANY(${ourClasses()}::text[]) AND attempts > 0`.execute(db);
  if (storeMounted) {
    // One log per daemon instance and day, <component>.<country>-<date>.log (and .N when rotated by size), each of
    // them: <component>.<country>.log only links to today's, and a run that crosses midnight logged its pause in
    // yesterday's (a chaos test that started at 23:59:17 read 0 pauses so).
    const logDir = path.join(dir, 'hosta', 'log');
    const log = fs
      .readdirSync(logDir)
      .filter((f) => /^(thumbnaild|downloadd)\.[a-z]+-\d{4}-\d{2}-\d{2}\.log(\.\d+)?$/.test(f))
      .map((f) => fs.readFileSync(path.join(logDir, f), 'utf8'))
      .join('\n');
    const account = pauseAccount(log, new Set(kills.map((k) => Number(k.workerId.split(':')[1]))));
    check(
      'the full store paused hosta and it resumed by itself',
      account.pauses > 0 && account.unresumed.length === 0,
      `${account.pauses} pauses, ${account.resumes} resumes logged; ${account.killedPaused} processes killed while paused (their successors start ` +
        `paused while the store is full, unpaused once it has room)${account.unresumed.length ? `; paused and never resumed: pids ${account.unresumed.join(', ')}` : ''}`,
    );
  }
  check('no row charged for our own faults', charged[0].n === 0, `${charged[0].n} rows with an ours class and attempts charged`);

  await Promise.all(frontends.map((f) => f.stop()));
  await source.close();
  if (storeMounted) execFileSync('umount', ['-l', fullStore], { stdio: 'ignore' });
  await db.destroy();
  if (process.env.CHAOS_KEEP) print(`  kept database ${dbName} (CHAOS_KEEP)`);
  else await dropDatabase(serverUrl, dbName);

  const figures = {
    urls: options.urls,
    good: good.length,
    bad: bad.length,
    countries: options.countries.join(','),
    processes: members.length,
    kills: kills.length,
    'kills of stage daemons': stageKills.length,
    'kills of the manager': kills.length - stageKills.length,
    restarts: members.reduce((n, m) => n + m.starts - 1, 0),
    crashes: crashes.length,
    'frontend n2 down for': frontendOutage,
    'PostgreSQL restart': pgRestart,
    'hosta thumbnail store full for': storeOutage,
    'time to drain (s)': drainSeconds === null ? 'not drained' : Number(drainSeconds.toFixed(1)),
    'partial files before cleanup': partialBefore,
    'source requests': source.requests(),
  };
  return { figures, checks };
}
