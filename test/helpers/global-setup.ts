import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './processes.ts';
import { dropTemplate, prepareTemplate } from './test-database.ts';

/** Builds dist/ if stale; starts (or finds) the real PostgreSQL and migrates the template every test database is copied from. */
export async function mochaGlobalSetup(): Promise<void> {
  // Tests that spawn bin/* run the compiled dist/: rebuild it when a source file changed since the last build.
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/build.mjs'), '--if-stale'], { stdio: 'inherit' });
  await prepareTemplate();
}

export async function mochaGlobalTeardown(): Promise<void> {
  await dropTemplate();
}
