import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * scripts/build.mjs on a project of its own (its scripts copied, this checkout's TypeScript linked): what a
 * source deleted or renamed since the last build made is gone from dist/ after the next one, --if-stale too.
 */
describe('npm run build: dist/ holds only what the sources make', function () {
  this.timeout(60_000);
  let project: string;

  beforeEach(() => {
    project = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-build-'));
    fs.mkdirSync(path.join(project, 'scripts'));
    for (const script of ['build.mjs', 'stale-outputs.mjs', 'executables.mjs'])
      fs.copyFileSync(path.join(ROOT, 'scripts', script), path.join(project, 'scripts', script));
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(project, 'node_modules'));
    for (const config of ['tsconfig.json', 'tsconfig.build.json']) fs.copyFileSync(path.join(ROOT, config), path.join(project, config));
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ type: 'module' }));
    fs.mkdirSync(path.join(project, 'src', 'push'), { recursive: true });
    fs.mkdirSync(path.join(project, 'migrations'));
    fs.writeFileSync(path.join(project, 'src', 'push', 'kept.ts'), 'export const kept = 1;\n');
    fs.writeFileSync(path.join(project, 'src', 'push', 'old-name.ts'), 'export const renamed = 2;\n');
    fs.writeFileSync(path.join(project, 'src', 'page.html'), '<p>status</p>\n');
    fs.writeFileSync(path.join(project, 'migrations', '2026-01-01T00-old-name.ts'), 'export async function up(): Promise<void> {}\n');
  });
  afterEach(() => fs.rmSync(project, { recursive: true, force: true }));

  const build = (...args: string[]) => execFileSync(process.execPath, [path.join(project, 'scripts', 'build.mjs'), ...args], { cwd: project, stdio: 'pipe' });
  const dist = (file: string) => fs.existsSync(path.join(project, 'dist', file));

  it('removes the outputs of a renamed module and migration and of a deleted asset, and keeps the rest', () => {
    build();
    for (const file of ['src/push/old-name.js', 'src/push/old-name.js.map', 'src/push/old-name.d.ts', 'migrations/2026-01-01T00-old-name.js', 'src/page.html'])
      assert.ok(dist(file), `${file} built first`);
    fs.renameSync(path.join(project, 'src', 'push', 'old-name.ts'), path.join(project, 'src', 'push', 'new-name.ts'));
    fs.renameSync(path.join(project, 'migrations', '2026-01-01T00-old-name.ts'), path.join(project, 'migrations', '2026-01-01T00-new-name.ts'));
    fs.rmSync(path.join(project, 'src', 'page.html'));
    // As the tests and benches build: only when a source changed. A rename or a delete changes no file's time.
    build('--if-stale');
    for (const file of ['src/push/old-name.js', 'src/push/old-name.js.map', 'src/push/old-name.d.ts', 'migrations/2026-01-01T00-old-name.js', 'src/page.html'])
      assert.ok(!dist(file), `${file} is gone`);
    for (const file of ['src/push/new-name.js', 'src/push/kept.js', 'src/push/kept.d.ts', 'migrations/2026-01-01T00-new-name.js'])
      assert.ok(dist(file), `${file} is there`);
  });
});

describe("the executables' bundles at start", function () {
  this.timeout(60_000);

  it('load no fetch implementation (undici): pg learns it runs on Node without building a Response', () => {
    // Node's own modules a process loaded are in process.moduleLoadList; a hook run first prints them at exit.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-start-loads-'));
    try {
      const hook = path.join(dir, 'print-loaded.mjs');
      fs.writeFileSync(hook, "process.on('exit', () => process.stdout.write(`\\nLOADED ${JSON.stringify(process.moduleLoadList)}\\n`));\n");
      for (const name of ['lis', 'lis_managerd', 'lis_cron_frontend']) {
        const out = execFileSync(process.execPath, ['--import', hook, path.join(ROOT, 'bin', name), '--help'], { cwd: ROOT, encoding: 'utf8' });
        const loaded = JSON.parse(/^LOADED (.*)$/m.exec(out)![1]) as string[];
        assert.ok(loaded.length > 50, `${name}: the list of loaded modules was read`);
        assert.ok(
          loaded.some((m) => m.includes('internal/modules/esm')),
          `${name}: the bundle was loaded`,
        );
        assert.deepEqual(
          loaded.filter((m) => m.includes('undici')),
          [],
          `${name} --help loaded undici`,
        );
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
