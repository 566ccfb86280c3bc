import { execFileSync } from 'node:child_process';
import os from 'node:os';
import pg from 'pg';
import { loadConfig } from '../../src/config/load-config.ts';
import type { LisConfig } from '../../src/config/config-schema.ts';
import { argOf } from './bench-args.ts';
import { busyShare, machineCpu, percent, stealShare, type MachineCpu } from './proc-stats.ts';
import { createDb, databaseUrl, type Db } from '../../src/db/connect.ts';
import { migrateToLatest } from '../../src/db/migrate-schema.ts';
import { dropDatabase, recreateDatabase } from '../../src/db/recreate-database.ts';

/**
 * The configuration as every command reads it: `--config FILE`, else `LIS_CONFIG`, else `imagesys.json` in
 * the working folder, else the defaults; `LIS_DATABASE_URL` over any of them.
 */
export function benchConfig(): LisConfig {
  return loadConfig({ file: argOf('config') });
}

/** The configured database server (or the embedded one, started on its configured port if need be). */
export async function benchServerUrl(): Promise<string> {
  return databaseUrl(benchConfig());
}

let checkpointRefused: string | null = null;

/**
 * Before a side's clock starts: the machine's dirty files written back (`sync`) and the server's dirty pages
 * flushed (`CHECKPOINT`), so that no side runs while the previous one's writes (a run's stores and rows, the
 * database it dropped, the one just made for this run) are still being written back under it. Without it the
 * e2e bench's system run right after another system run (every second pair) was the slower one of its pair in
 * every run. A server user that may not CHECKPOINT (no pg_checkpoint role) is said once, and the sync still done.
 */
export async function settleMachine(): Promise<void> {
  execFileSync('sync');
  if (checkpointRefused !== null) return;
  const client = new pg.Client({ connectionString: await benchServerUrl() });
  await client.connect();
  try {
    await client.query('CHECKPOINT');
  } catch (error) {
    checkpointRefused = (error as Error).message;
    console.log(`bench: cannot CHECKPOINT as this user (${checkpointRefused}): each side starts after a sync only`);
  } finally {
    await client.end();
  }
}

/** A fresh, migrated database on the configured (or embedded) server, dropped and made anew each run. */
export async function freshBenchDatabase(name: string): Promise<{ db: Db; url: string; drop: () => Promise<void> }> {
  const serverUrl = await benchServerUrl();
  const url = await recreateDatabase(serverUrl, name);
  const db = createDb(url, 4);
  await migrateToLatest(db);
  return {
    db,
    url,
    drop: async () => {
      await db.destroy();
      await dropDatabase(serverUrl, name);
    },
  };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The last lines of every bench: one per comparison, `ratio <name>: X.XX` (contender over baseline; above 1: ahead). */
export function printRatio(name: string, ratio: number): void {
  if (!conditionsPrinted) {
    conditionsPrinted = true;
    console.log(machineConditionsLine(benchStart, machineCpu()));
  }
  console.log(`ratio ${name}: ${ratio.toFixed(2)}`);
}

/** The machine's CPU when this module was loaded: at a bench's start, as every bench imports it first thing. */
const benchStart = machineCpu();
let conditionsPrinted = false;

/**
 * The line before a bench's ratios: how busy the machine was over the whole bench, how much of it the host took
 * (steal), and the load average, so that a run can be read beside the last one. Pure.
 */
export function machineConditionsLine(start: MachineCpu, end: MachineCpu, load = os.loadavg()): string {
  return `machine over the bench: cores ${percent(busyShare(start, end))} busy, ${percent(stealShare(start, end))} taken by the host (steal); load average now ${load.map((l) => l.toFixed(1)).join(' ')}`;
}

/** Polls `check` every `everyMs` until it returns true; throws after `seconds` naming `what`: no bench waits forever. */
export async function waitUntil(what: string, seconds: number, check: () => Promise<boolean> | boolean, everyMs = 100): Promise<void> {
  const deadline = performance.now() + seconds * 1000;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`bench: gave up after ${seconds} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Geometric mean: the one summary of per-pair ratios. */
export function geomean(values: number[]): number {
  return Math.exp(values.reduce((s, v) => s + Math.log(v), 0) / values.length);
}
