import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** Runs plain Node (no tsx, whatever mocha runs under) in `cwd`; its exit code and output. */
function plainNode(cwd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  // No tsx; and the config file's database, not the run's LIS_DATABASE_URL (which would win over it).
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.LIS_DATABASE_URL;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('the package, installed by another project', () => {
  let t: TestDatabase;
  let project: string;
  beforeEach(async () => {
    t = await createTestDatabase();
    // Listing code's project: ImageSys installed by path (npm links a folder dependency like this).
    project = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-listing-'));
    fs.writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'listing', type: 'module', private: true, dependencies: { imagesys: `file:${ROOT}` } }),
    );
    fs.mkdirSync(path.join(project, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(project, 'node_modules', 'imagesys'));
  });
  afterEach(async () => {
    fs.rmSync(project, { recursive: true, force: true });
    await t.drop();
  });

  it('imports the compiled Interface in plain Node and answers through it', async function () {
    this.timeout(60_000);
    const config = t.writeConfig();
    const script = `
      import('imagesys').then(async (m) => {
        const images = await m.ImageSys.open({ config: ${JSON.stringify(config)} });
        const hash = m.lis_hash_for_url('http://feed.example.com/a.jpg');
        const queued = await images.enqueue(['http://feed.example.com/a.jpg'], { country: 'uk', datasourceId: 16 });
        const data = await images.getSearchApiDataForHash(hash);
        await images.close();
        console.log(JSON.stringify({ kind: typeof m.ImageSys, hash, inserted: queued.inserted, data }));
      });`;
    const run = await plainNode(project, ['-e', script]);
    assert.equal(run.code, 0, run.out);
    const result = JSON.parse(run.out.trim().split('\n').at(-1)!) as { kind: string; hash: string; inserted: number; data: unknown };
    assert.equal(result.kind, 'function');
    assert.match(result.hash, /^[0-9a-f]{32}$/);
    assert.equal(result.inserted, 1);
    assert.equal(result.data, null, 'queued, not live yet');
  });

  it('gives listing code written in TypeScript the types, from the declarations in dist/', async function () {
    this.timeout(120_000);
    fs.writeFileSync(
      path.join(project, 'listing.ts'),
      `import { ImageSys, type SearchApiImage, type SiImage } from 'imagesys';
       const images: ImageSys = await ImageSys.open();
       const data: SearchApiImage | null = await images.getSearchApiDataForHash('0'.repeat(32));
       const wrong: number = data?.url ?? 0;
       // A partial config object, as open() takes it (the rest defaults): no error.
       await ImageSys.open({ config: { database: { url: 'postgres://imagesys@db1/imagesys' }, countries: ['uk'] } });
       // Read-only lists (as const, a frozen listing's photos) are taken: no call changes them.
       const photos = ['http://feed.example.com/a.jpg'] as const;
       await images.imagesForSiBuild(photos, { country: 'uk', datasourceId: 16 });
       await images.enqueue(photos, { country: 'uk', datasourceId: 16 });
       await images.getSearchApiDataForHashes(['0'.repeat(32)] as readonly string[]);
       // Every status an SiImage can have, and only those: a switch over them needs no default.
       function shown(status: SiImage['status']): string {
         switch (status) {
           case 'download': case 'thumbnail': case 'push': return 'coming';
           case 'live': return 'shown';
           case 'failed': case 'parked': case 'rejected': return 'not shown';
         }
       }
       export { shown };
       export { wrong };\n`,
    );
    fs.writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: [] },
        files: ['listing.ts'],
      }),
    );
    const run = await plainNode(project, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.']);
    // The one error is the deliberate one: the types are real (url is a string), not `any`.
    assert.equal(run.code, 2, run.out);
    assert.match(run.out, /listing\.ts\(4,\d+\): error TS2322: Type 'string \| 0' is not assignable to type 'number'/);
    assert.equal(run.out.match(/error TS/g)?.length, 1, run.out);
  });
});

describe('every executable the package lists', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };

  it('answers --version with the installed version, exit 0, even a daemon whose --country is required', async function () {
    this.timeout(60_000);
    // An operator asks a host which release it runs: every executable says, with plain Node, from anywhere.
    const calls = [...Object.entries(pkg.bin).map(([name, file]) => [name, file, '--version']), ['lis', pkg.bin.lis, '-V']];
    const runs = await Promise.all(calls.map(async ([name, file, flag]) => ({ name, flag, ...(await plainNode(os.tmpdir(), [path.join(ROOT, file), flag])) })));
    for (const run of runs) assert.deepEqual(run, { name: run.name, flag: run.flag, code: 0, out: `${pkg.version}\n` });
  });
});

describe('the packed package (npm pack)', () => {
  /**
   * One `npm pack` for the describe (its tarball and, from --json, the files it put in it): both tests read the
   * package as packed, neither changes it, and a pack costs 2-3 s (it was run twice, once as a --dry-run).
   */
  let packed: Promise<{ dir: string; tarball: string; files: string[] }> | undefined;
  const pack = () =>
    (packed ??= (async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-packed-'));
      const { stdout } = await promisify(execFile)('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], {
        cwd: ROOT,
        maxBuffer: 64 << 20,
      });
      const [report] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
      return { dir, tarball: path.join(dir, report.filename), files: report.files.map((f) => f.path) };
    })());
  after(async () => {
    const made = await packed?.catch(() => null);
    if (made) fs.rmSync(made.dir, { recursive: true, force: true });
  });

  /** The files `npm pack` puts in the tarball, relative to the package's root. */
  async function packedFiles(): Promise<string[]> {
    return (await pack()).files;
  }

  it('ships source maps that carry the TypeScript they point to (no src/ in the package): each source is inside its map, as in the checkout', async function () {
    this.timeout(60_000);
    const files = await packedFiles();
    const maps = files.filter((f) => f.endsWith('.js.map'));
    assert.ok(maps.length > 100, `${maps.length} maps`);
    assert.ok(!files.some((f) => f.startsWith('src/')), 'src/ is not shipped: the maps carry it');
    const wrong: string[] = [];
    for (const file of maps) {
      const map = JSON.parse(fs.readFileSync(path.join(ROOT, file), 'utf8')) as { sourceRoot?: string; sources: string[]; sourcesContent?: (string | null)[] };
      map.sources.forEach((source, i) => {
        const target = path.resolve(path.dirname(path.join(ROOT, file)), map.sourceRoot ?? '', source);
        if (files.includes(path.relative(ROOT, target))) return; // shipped itself
        // Before: no sourcesContent, and src/*.ts not shipped: debuggers and error excerpts had nothing to show.
        // (A bundled dependency's file is carried without its own map's comment: the bundle's map replaces it.)
        const carried = fs.existsSync(target) && fs.readFileSync(target, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/gm, '');
        if (map.sourcesContent?.[i]?.replace(/^\/\/# sourceMappingURL=.*$/gm, '') !== carried) wrong.push(`${file}: ${source}`);
      });
    }
    assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} of the maps' sources neither shipped nor inside their map`);
  });

  it('an uncaught error from an installed copy shows its TypeScript file, line and code under --enable-source-maps', async function () {
    this.timeout(60_000);
    const { tarball } = await pack();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-packed-'));
    try {
      await promisify(execFile)('tar', ['xzf', tarball], { cwd: dir });
      const installed = path.join(dir, 'package');
      fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(installed, 'node_modules'));
      const module = path.join(installed, 'dist/src/config/load-config.js');
      const script = `import { loadConfig } from ${JSON.stringify(module)}; loadConfig({ file: '/nonexistent/imagesys.json' });`;
      const run = await plainNode(installed, ['--enable-source-maps', '--input-type=module', '-e', script]);
      assert.equal(run.code, 1, run.out);
      assert.ok(!fs.existsSync(path.join(installed, 'src')));
      // The excerpt's first lines: where, in TypeScript, and that line's code (from the map: src/ is not there).
      assert.match(
        run.out,
        new RegExp(`^${installed}/src/config/load-config\\.ts:\\d+\\n\\s*throw new ConfigError\\(.*\\(error as NodeJS\\.ErrnoException\\)`),
      );
      assert.match(run.out, /at loadConfig \(\S+\/src\/config\/load-config\.ts:\d+:\d+\)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the executables (bundles)', () => {
  it("name the TypeScript in a bug's stack trace, not the bundle's lines", async function () {
    this.timeout(60_000);
    // A fault from outside: JSON.stringify throws when `lis config` prints, an error nobody classified (a bug).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-stack-'));
    try {
      const fault = path.join(dir, 'stringify-throws.mjs');
      fs.writeFileSync(
        fault,
        'const stringify = JSON.stringify;\n' +
          "JSON.stringify = function (v, r, space) { if (space === 2) throw new Error('stringify refused (test)'); return stringify.call(this, v, r, space); };\n",
      );
      const run = await plainNode(dir, ['--import', fault, path.join(ROOT, 'bin/lis'), 'config']);
      assert.equal(run.code, 1, run.out);
      assert.match(run.out, /^error: Error: stringify refused \(test\)$/m);
      // Before: `at file:///.../dist/bin/chunks/chunk-U4D3IXOD.js:2037:46`.
      const root = ROOT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      assert.match(run.out, new RegExp(`^ {4}at (.* \\()?${root}/src/cli/config-command\\.ts:\\d+:\\d+\\)?$`, 'm'), run.out);
      assert.match(run.out, new RegExp(`^ {4}at runCommand \\(${root}/src/util/exit-on-error\\.ts:\\d+:\\d+\\)$`, 'm'), run.out);
      assert.doesNotMatch(run.out, /dist\/bin\//, run.out);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
