import { dropTemplate, prepareTemplate } from './test-database.ts';

/** Starts (or finds) the real PostgreSQL and migrates the template every test database is copied from. */
export async function mochaGlobalSetup(): Promise<void> {
  await prepareTemplate();
}

export async function mochaGlobalTeardown(): Promise<void> {
  await dropTemplate();
}
