import type { LisConfig } from '../config/config-schema.ts';
import { closeDb, type Db } from './connect.ts';
import { openDatabase, type OpenDatabaseOptions } from './open-database.ts';

/**
 * Opens the config's database (openDatabase), runs `work` on it, and closes it whatever `work` did: the commands'
 * one way in and out. The close waits up to the connect bound (database.connectTimeoutSeconds) for the server to
 * close each connection, then cuts what is still open (closeDb): a pool's plain end leaves its idle connection open
 * until the server answers the goodbye, and a server frozen since the last query never does, so a command whose
 * work was done (or `lis web` stopped by Ctrl-C) did not exit until the server ran again.
 */
export async function withDatabase<T>(config: LisConfig, work: (db: Db) => Promise<T>, options: OpenDatabaseOptions = {}): Promise<T> {
  const db = await openDatabase(config, options);
  try {
    return await work(db);
  } finally {
    await closeDb(db, config.database.connectTimeoutSeconds * 1000);
  }
}
