// The whole system on real photos, end to end: a local keep-alive HTTP source,
// lis_downloadd, lis_thumbnaild (three presets) and lis_pusherd to three rsync
// daemon frontends, all running at once on the embedded PostgreSQL; and in the
// same run a plain sharp loop making the same thumbnails from files on disk, the two interleaved
// (loop, system, loop, system...: load drift on a shared machine moves both alike) with a ratio per pair.
//   node --import tsx bench/end-to-end.ts [--images 400] [--pairs 2] [--deadline 600] [--config FILE]
// Needs ../shared/testdata (the exif-orientation set and PngSuite).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import sharp from 'sharp';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { DAEMON_ENV, nodeFlagsOf } from '../src/services/launch-settings.ts';
import { RsyncDaemon } from '../test/helpers/rsync-daemons.ts';
import type { PlainLoopJob } from './lib/plain-loop-child.ts';
import { workloads } from './lib/thumbnail-contenders.ts';
import { argOf, benchOptions, flag } from './lib/bench-args.ts';
import { benchConfig, freshBenchDatabase, geomean, printRatio, settleMachine, waitUntil } from './lib/bench-database.ts';
import { busyShare, cpuSeconds, machineCpu, peakRssKb, percent, stealShare } from './lib/proc-stats.ts';
import { cpuByThread, threadLine } from './lib/thumbnail-threads.ts';

benchOptions({ images: 'N', pairs: 'N', deadline: 'SECONDS', testdata: 'FOLDER' });

// fileURLToPath, not URL.pathname: a checkout under a folder with a space would read as my%20clone.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TESTDATA = path.resolve(argOf('testdata') ?? process.env.LIS_TESTDATA ?? path.resolve(ROOT, '../shared/testdata'));
const images = flag('images', 1000);
const pairs = flag('pairs', 2);
/** No wait of this bench is longer: a stuck daemon fails the bench instead of hanging it. */
const deadlineSeconds = flag('deadline', 600);
const work = path.join(ROOT, 'var', 'bench-e2e');
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });

// The photo set: the 18 EXIF photos, copies of them resized to 1200 and 800 wide, and the valid PngSuite.
if (!fs.existsSync(TESTDATA)) {
  console.error(`needs ${TESTDATA} (the shared test data beside the checkout)`);
  process.exit(2);
}
const exif = fs
  .readdirSync(path.join(TESTDATA, 'exif-orientation'))
  .filter((f) => f.endsWith('.jpg'))
  .map((f) => path.join(TESTDATA, 'exif-orientation', f));
const sources: Buffer[] = [];
for (const file of exif) {
  sources.push(fs.readFileSync(file));
  for (const width of [1200, 800]) sources.push(await sharp(file).resize({ width }).keepExif().jpeg({ quality: 90 }).toBuffer());
}
for (const f of fs.readdirSync(path.join(TESTDATA, 'pngsuite', 'png')).filter((f) => f.endsWith('.png') && !f.startsWith('x'))) {
  sources.push(fs.readFileSync(path.join(TESTDATA, 'pngsuite', 'png', f)));
}
const bodyOf = (i: number) => sources[i % sources.length];
const originalsDir = path.join(work, 'plain-originals');
fs.mkdirSync(originalsDir, { recursive: true });
for (let i = 0; i < images; i++) fs.writeFileSync(path.join(originalsDir, String(i)), bodyOf(i));
const totalBytes = Array.from({ length: images }, (_, i) => bodyOf(i).length).reduce((a, b) => a + b, 0);
console.log(
  `${images} images (${sources.length} distinct: ${exif.length} EXIF photos 1800x1200, ${exif.length * 2} resized copies, ${sources.length - exif.length * 3} PngSuite), ${(totalBytes / 1048576).toFixed(1)} MB`,
);

// Baseline: a plain sharp loop, one pipeline per preset, as many images in flight as cores, making the same
// thumbnails as the daemon (bench/lib/thumbnail-contenders.ts: its sharpening, JPEG settings and failOn). An earlier
// version encoded with mozjpeg's scan search on every preset, slower than the daemon's settings, which flattered
// the ratio; one before that left out the sharpening and ran ~15% faster.
const base = benchConfig();
const workload = workloads(base.thumbnail).default;
const presets = Object.entries(workload.presets);
const cores = os.availableParallelism();

/**
 * Each run (of either side) writes into folders of its own, and nothing is deleted until the last run is over.
 * Deleting the last system run's 13,000 files at the start of the next (as this bench did) frees their blocks, and
 * on a disk mounted with `discard` (this machine's) the kernel trims them after its journal commits, a second or so
 * of the disk's time, still going on when the next run's clock started (after `sync`): that run's fsyncs queued
 * behind the trims, and every system run after a bench's first was 5-12 % slower than the first.
 */
let runs = 0;
const runFolder = (side: string) => path.join(work, `${side}-${++runs}`);

/** One run of the loop, in a fresh process (bench/lib/plain-loop-child.ts says why), timed from its start signal. */
async function plainLoopInChild(): Promise<{ seconds: number; cpuSeconds: number; busy: number; steal: number }> {
  const outDir = runFolder('plain');
  fs.mkdirSync(outDir, { recursive: true });
  const plainJob = path.join(outDir, 'job.json');
  fs.writeFileSync(plainJob, JSON.stringify({ originalsDir, images, outDir, inFlight: cores, workload, thumbnail: base.thumbnail } satisfies PlainLoopJob));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'lib', 'plain-loop-child.ts'), plainJob], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: child.stdout });
  const gone = once(child, 'exit');
  const exited = gone.then(([code, signal]) => {
    throw new Error(`bench: the plain loop exited (${code ?? signal}) before its result`);
  });
  // Its next line, or an error when it exits first or says nothing within the bench's deadline. A line comes only
  // after what the parent does before it asks (the child waits for "go"), so none is missed between two asks.
  const nextLine = async () => ((await Promise.race([once(lines, 'line', { signal: AbortSignal.timeout(deadlineSeconds * 1000) }), exited])) as [string])[0];
  try {
    if ((await nextLine()) !== 'ready') throw new Error('bench: the plain loop did not say ready');
    await settleMachine();
    const machineStart = machineCpu();
    child.stdin.write('go\n');
    const result = JSON.parse(await nextLine()) as { seconds: number; cpuSeconds: number };
    const machineEnd = machineCpu();
    return { ...result, busy: busyShare(machineStart, machineEnd), steal: stealShare(machineStart, machineEnd) };
  } finally {
    exited.catch(() => {});
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await gone;
    lines.close();
  }
}

async function plainRun(): Promise<number> {
  const { seconds: plainSeconds, cpuSeconds: plainCpuSeconds, busy, steal } = await plainLoopInChild();
  const plainRate = images / plainSeconds;
  console.log(
    `plain sharp loop: ${plainRate.toFixed(1)} images/s (${(plainRate * presets.length).toFixed(1)} thumbnails/s) in ${plainSeconds.toFixed(1)}s, CPU ${plainCpuSeconds.toFixed(1)} s (${((plainCpuSeconds * 1000) / images).toFixed(1)} ms an image); the machine's cores ${percent(busy)} busy, ${percent(steal)} taken by the host`,
  );
  return plainRate;
}

// The system.
/** E2E_CPU_PROF=DIR: lis_thumbnaild writes a V8 CPU profile of its run into DIR at exit (node --cpu-prof). */
const profileFlags = (bin: string): string[] =>
  process.env.E2E_CPU_PROF && bin === 'lis_thumbnaild' ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.E2E_CPU_PROF)}`] : [];
async function systemRun(): Promise<number> {
  const { db, url, drop } = await freshBenchDatabase('lis_bench_e2e');
  const run = runFolder('system');
  await sql`
  CREATE TABLE bench_moves (from_stage text, to_stage text, at timestamptz DEFAULT clock_timestamp());
  CREATE FUNCTION bench_audit() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN INSERT INTO bench_moves (from_stage, to_stage) VALUES (OLD.stage, NEW.stage); RETURN NULL; END $$;
  CREATE TRIGGER bench_audit AFTER UPDATE ON live_images FOR EACH ROW WHEN (OLD.stage IS DISTINCT FROM NEW.stage) EXECUTE FUNCTION bench_audit();`.execute(db);
  const server = http.createServer((req, res) => {
    const i = Number(/^\/img\/(\d+)$/.exec(req.url ?? '')?.[1] ?? NaN);
    if (!Number.isInteger(i)) return void res.writeHead(404).end();
    const body = bodyOf(i);
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const sourceBase = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const frontends: RsyncDaemon[] = [];
  // Whatever ends the run (a daemon that exits before registering, a deadline), the frontends' rsync daemons, the
  // source and the bench database go with it: they were left running when a run failed.
  try {
    for (const name of ['n1', 'n2', 'n3']) {
      const daemon = await RsyncDaemon.start(path.join(run, 'frontends', name));
      frontends.push(daemon);
      await addFrontend(db, name, daemon.url());
    }
    fs.mkdirSync(run, { recursive: true });
    const configFile = path.join(run, 'config.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        database: { url },
        stores: { originals: path.join(run, 'originals'), thumbnails: path.join(run, 'thumbnails') },
        log: { dir: path.join(run, 'log') },
        download: { allowAddresses: ['127.0.0.1:*'] },
        queue: { pollSeconds: 0.2 },
        thumbnail: { ...base.thumbnail, ...(process.env.E2E_IN_FLIGHT ? { imagesInFlight: Number(process.env.E2E_IN_FLIGHT) } : {}) },
      }),
    );
    const daemons: Array<{ bin: string; child: ChildProcess; peakKb: number; cpuSeconds?: number; startCpuSeconds?: number; threads?: Map<string, number> }> = [
      'lis_downloadd',
      'lis_thumbnaild',
      'lis_pusherd',
    ].map((bin) => ({
      bin,
      // Started as servicectl starts them: the launch settings (malloc arenas, V8 flags) of src/services/launch-settings.ts.
      child: spawn(
        process.execPath,
        [...nodeFlagsOf(bin), ...profileFlags(bin), path.join(ROOT, 'bin', bin), '--country', 'uk', '--service', '--config', configFile],
        {
          stdio: 'ignore',
          // LIS_DATABASE_URL wins over a config file: the children must get the bench's database, not the caller's.
          env: { ...process.env, ...DAEMON_ENV, LIS_DATABASE_URL: url, LIS_CONFIG: configFile },
        },
      ),
      peakKb: 0,
    }));
    // Let the daemons start (and register) before the clock starts.
    const exited = daemons.map((d) => new Promise<string>((resolve) => d.child.once('exit', (code) => resolve(`${d.bin} exited ${code}`))));
    const stopDaemons = () =>
      Promise.all(
        daemons.map((d) =>
          d.child.exitCode === null && d.child.signalCode === null ? new Promise((resolve) => (d.child.once('close', resolve), d.child.kill('SIGTERM'))) : null,
        ),
      );
    let early: string | null = null;
    void Promise.race(exited).then((why) => (early = why));
    let seconds: number;
    let t0: Date;
    // How busy the machine's cores were while the system ran (daemons, PostgreSQL, rsync, the source): idle cores are room it left unused.
    let machineStart: ReturnType<typeof machineCpu>;
    let busy: number;
    let steal: number;
    try {
      await waitUntil('the three daemons to register', 120, async () => {
        if (early) throw new Error(`bench: ${early} before registering (logs in ${path.join(run, 'log')})`);
        const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM workers WHERE stopped_at IS NULL`.execute(db);
        return Number(rows[0].n) === daemons.length;
      });
      await settleMachine();
      // Start-up (loading the code, connecting, registering) is paid once per process, not per image: counted apart.
      for (const d of daemons) d.startCpuSeconds = cpuSeconds(d.child.pid!, { children: true });
      const started = performance.now();
      machineStart = machineCpu();
      t0 = (await sql<{ t0: Date }>`SELECT clock_timestamp() AS t0`.execute(db)).rows[0].t0;
      await sql`INSERT INTO live_images (country, datasource_id, image_url)
          SELECT 'uk', 1, ${sourceBase} || '/img/' || g FROM generate_series(0, ${images - 1}) g`.execute(db);
      await waitUntil('every row to leave the waiting state', deadlineSeconds, async () => {
        if (early) throw new Error(`bench: ${early} during the run (logs in ${path.join(run, 'log')})`);
        const { rows } = await sql<{ waiting: string }>`SELECT count(*) FILTER (WHERE state = 'waiting') AS waiting FROM live_images`.execute(db);
        for (const d of daemons) d.peakKb = Math.max(d.peakKb, peakRssKb(d.child.pid!));
        return Number(rows[0].waiting) === 0;
      });
      seconds = (performance.now() - started) / 1000;
      const machineEnd = machineCpu();
      busy = busyShare(machineStart, machineEnd);
      steal = stealShare(machineStart, machineEnd);
      for (const d of daemons) {
        d.peakKb = Math.max(d.peakKb, peakRssKb(d.child.pid!));
        d.cpuSeconds = cpuSeconds(d.child.pid!, { children: true });
        d.threads = cpuByThread(d.child.pid!);
      }
    } finally {
      await stopDaemons();
    }

    const { rows: states } = await sql<{ stage: string; state: string; n: string }>`SELECT stage, state, count(*) AS n FROM live_images GROUP BY 1, 2`.execute(
      db,
    );
    const live = Number(states.find((s) => s.stage === 'live')?.n ?? 0);
    const { rows: stageSpans } = await sql<{ from_stage: string; n: string; span: number }>`
  SELECT from_stage, count(*) AS n, extract(epoch FROM max(at) - min(at))::float8 AS span FROM bench_moves GROUP BY 1`.execute(db);
    const { rows: offsets } = await sql<{ from_stage: string; first: number; last: number }>`
  SELECT from_stage, extract(epoch FROM min(at) - ${t0}::timestamptz)::float8 AS first, extract(epoch FROM max(at) - ${t0}::timestamptz)::float8 AS last
    FROM bench_moves GROUP BY 1`.execute(db);
    const e2eRate = live / seconds;
    console.log(
      `\nsystem: ${live} of ${images} live on 3 frontends in ${seconds.toFixed(1)}s: ${e2eRate.toFixed(1)} images/s end to end (${states.map((s) => `${s.stage}/${s.state} ${s.n}`).join(', ')}); the machine's cores ${percent(busy)} busy, ${percent(steal)} taken by the host`,
    );
    for (const stage of ['download', 'thumbnail', 'push']) {
      const s = stageSpans.find((x) => x.from_stage === stage);
      const o = offsets.find((x) => x.from_stage === stage);
      if (s && o)
        console.log(
          `  ${stage.padEnd(9)} ${(Number(s.n) / Math.max(s.span, 0.001)).toFixed(1)} images/s while it ran (${s.n} rows from ${o.first.toFixed(1)}s to ${o.last.toFixed(1)}s, in parallel with the other stages)`,
        );
    }
    for (const d of daemons)
      console.log(
        `  ${d.bin.padEnd(15)} peak memory ${(d.peakKb / 1024).toFixed(0)} MB, CPU ${d.cpuSeconds!.toFixed(1)} s (start-up ${d.startCpuSeconds!.toFixed(1)} s; after it ${(
          ((d.cpuSeconds! - d.startCpuSeconds!) * 1000) /
          images
        ).toFixed(1)} ms an image); by thread: ${threadLine(d.threads!)}`,
      );
    return e2eRate;
  } finally {
    server.close();
    await Promise.all(frontends.map((f) => f.stop()));
    await drop();
  }
}

const ratios: number[] = [];
for (let pair = 1; pair <= pairs; pair++) {
  console.log(`\npair ${pair} of ${pairs}`);
  // ABAB, starting with the other one every second pair, so neither always runs on the warmer machine.
  const [plainRate, systemRate] =
    pair % 2 === 1
      ? [await plainRun(), await systemRun()]
      : await (async () => {
          const s = await systemRun();
          return [await plainRun(), s];
        })();
  ratios.push(systemRate / plainRate);
  console.log(`pair ${pair}: system / plain sharp loop = ${(systemRate / plainRate).toFixed(2)} (aim: at least 1.0, issue 17)`);
}
console.log('');
printRatio('e2e system / plain sharp loop (geometric mean of the pairs)', geomean(ratios));
// Every run's folders, once no run is left to measure (a failed bench leaves them, with the daemons' logs).
fs.rmSync(work, { recursive: true, force: true });
process.exit(0);
