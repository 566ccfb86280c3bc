import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's own folder (where package.json is), found by walking up from
 * this file: `src/util/` when run through tsx, `dist/src/util/` when compiled,
 * `dist/bin/` inside an executable's bundle. bin/ and other top-level files are
 * found from here, not by a fixed `../..`.
 */
function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

export const PACKAGE_ROOT = findRoot();

/** A path inside the package, e.g. `packagePath('bin', 'lis_cron_frontend')`. */
export function packagePath(...parts: string[]): string {
  return path.join(PACKAGE_ROOT, ...parts);
}

/** Whether this code runs compiled (dist/, as a module tree or an executable's bundle) or as TypeScript through tsx. */
const COMPILED = fileURLToPath(import.meta.url).endsWith('.js');

/**
 * A file that the code under src/ or migrations/ reads at run time (a migration, the status page, the supervisor
 * script), named as in the checkout (`runtimePath('src', 'web', 'status-page.html')`): under dist/ when this code
 * runs compiled, where the build puts it, and in place through tsx. Not found from this module's own URL: in an
 * executable's bundle (dist/bin/) that URL is the bundle's.
 */
export function runtimePath(...parts: string[]): string {
  return COMPILED ? path.join(PACKAGE_ROOT, 'dist', ...parts) : path.join(PACKAGE_ROOT, ...parts);
}

/** The installed package's version (its package.json), for every executable's `--version`. */
export const PACKAGE_VERSION: string = (JSON.parse(fs.readFileSync(packagePath('package.json'), 'utf8')) as { version: string }).version;
