import { parseConfig } from '../../src/config/load-config.ts';
import { createDb, databaseUrl, dropDatabase, migrateToLatest, recreateDatabase, type Db } from '../../src/db/connect.ts';

/** A fresh, migrated database on the configured (or embedded) server, dropped and made anew each run. */
export async function freshBenchDatabase(name: string): Promise<{ db: Db; url: string; drop: () => Promise<void> }> {
  const serverUrl = await databaseUrl(parseConfig({}, process.env));
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

export function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
