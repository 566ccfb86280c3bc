// Thumbnails/s on the same images, sizes and encoder settings, interleaved (ABAB: daemon, loop, ImageMagick,
// then ImageMagick, loop, daemon, ...) with a ratio per pair: lis_thumbnaild's makeThumbnails (decode once,
// derive every preset, admitted by thumbnail.pixelBudget), a plain sharp loop (one pipeline per size, the same
// JPEG settings: src/thumbnail/jpeg-options.ts) and ImageMagick (one process per image, every size from one
// decode via +clone). Two workloads: `default` (the config's presets, quality 82, sharpen 0x0.5) and
// `migration` (quality 90, sharpen 0x1, three fit-inside sizes, as a site coming from ImageMagick sets it).
// Node contenders run in child processes of their own (with lis_thumbnaild's launch settings, as servicectl starts
// the daemon: src/services/launch-settings.ts) so that peak RSS is their own. Then bytes and SSIM (see bench/lib/thumbnail-quality.ts).
//   node --import tsx bench/thumbnail.ts [--workload default|migration|both] [--rounds 3] [--pairs 3]
//     [--dir FOLDER_OF_JPEGS] [--images N] [--config FILE] [--no-quality]
//   node --import tsx bench/thumbnail.ts --memory [--png-count 8] [--png-side 7000]   peak RSS on big interlaced PNGs
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import type { ThumbnailConfig } from '../src/config/thumbnail-config.ts';
import { makeThumbnails } from '../src/thumbnail/make-thumbnails.ts';
import { DAEMON_ENV, nodeFlagsOf } from '../src/services/launch-settings.ts';
import { PixelBudget } from '../src/thumbnail/pixel-budget.ts';
import { applySharpSettings, parallelismFor } from '../src/thumbnail/sharp-settings.ts';
import { argOf, benchOptions, flag, hasSwitch } from './lib/bench-args.ts';
import { benchConfig, geomean, printRatio } from './lib/bench-database.ts';
import { peakRssKb } from './lib/proc-stats.ts';
import { quality } from './lib/thumbnail-bytes.ts';
import { IM, imArgs, plainSharp, settingsOf, workloads, type Workload } from './lib/thumbnail-contenders.ts';

benchOptions({
  workload: 'default|migration|both',
  rounds: 'N',
  pairs: 'N',
  dir: 'FOLDER',
  images: 'N',
  'no-quality': null,
  memory: null,
  'png-count': 'N',
  'png-side': 'N',
  child: 'daemon|loop',
  list: 'FILE',
  'in-flight': 'N',
  threads: 'N',
});

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TIME = '/usr/bin/time';

const rounds = flag('rounds', 3);
const pairs = flag('pairs', 3);
const config: ThumbnailConfig = benchConfig().thumbnail;
const dir = path.resolve(ROOT, argOf('dir') ?? path.join(process.env.LIS_TESTDATA ?? '../shared/testdata', 'exif-orientation'));

const WORKLOADS = workloads(config);
const parallelism = parallelismFor({
  imagesInFlight: argOf('in-flight') ? Number(argOf('in-flight')) : config.imagesInFlight,
  sharpThreads: argOf('threads') ? Number(argOf('threads')) : config.sharpThreads,
});
const lanes = parallelism.imagesInFlight;

/** Runs `work` over every file `rounds` times with `lanes` in flight; seconds taken. */
async function drive(files: string[], work: (file: string, index: number) => Promise<void>): Promise<number> {
  const jobs = Array.from({ length: rounds }, () => files).flat();
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < jobs.length) {
        const i = next++;
        await work(jobs[i], i);
      }
    }),
  );
  return (performance.now() - started) / 1000;
}

/** In a child process: one node contender over `files`; prints seconds, CPU seconds and peak RSS as JSON. */
async function childMain(contender: string, w: Workload, files: string[], pixelBudget: number): Promise<void> {
  applySharpSettings(parallelism);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `bench-${contender}-`));
  const cpuBefore = process.cpuUsage();
  const budget = new PixelBudget(pixelBudget);
  const admit = (pixels: number) => budget.acquire(pixels);
  const seconds = await drive(files, async (file, i) => {
    if (contender === 'daemon') {
      const made = await makeThumbnails(await fs.promises.readFile(file), settingsOf(w, config), admit);
      await Promise.all(Object.entries(made.presets).map(([name, p]) => fs.promises.writeFile(path.join(out, `${i}_${name}.jpg`), p.files[0].data)));
    } else {
      for (const [name, preset] of Object.entries(w.presets)) await plainSharp(file, preset, w, config).toFile(path.join(out, `${i}_${name}.jpg`));
    }
  });
  fs.rmSync(out, { recursive: true, force: true });
  const cpu = process.cpuUsage(cpuBefore);
  process.stdout.write(JSON.stringify({ seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, maxRssMb: peakRssKb('self') / 1024 }));
}

/** One run of a contender: wall time, CPU time (user + system), peak RSS. */
interface Run {
  seconds: number;
  cpuSeconds: number;
  maxRssMb: number;
}

function nodeContender(contender: 'daemon' | 'loop', w: Workload, files: string[], pixelBudget = config.pixelBudget): Promise<Run> {
  return new Promise((resolve, reject) => {
    const list = path.join(os.tmpdir(), `bench-thumbnail-files-${process.pid}.json`);
    fs.writeFileSync(list, JSON.stringify({ files, workload: w, pixelBudget }));
    const args = [
      '--child',
      contender,
      '--list',
      list,
      '--rounds',
      String(rounds),
      '--in-flight',
      String(parallelism.imagesInFlight),
      '--threads',
      String(parallelism.sharpThreads),
    ];
    const child = spawn(process.execPath, [...nodeFlagsOf('lis_thumbnaild'), '--import', 'tsx', fileURLToPath(import.meta.url), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...DAEMON_ENV },
    });
    let text = '';
    child.stdout.on('data', (c) => (text += c));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(text) as Run) : reject(new Error(`${contender} exited ${code}`))));
  });
}

async function imContender(w: Workload, files: string[]): Promise<Run> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-imagemagick-'));
  let peak = 0;
  let cpuSeconds = 0;
  const seconds = await drive(files, async (file, i) => {
    const { stderr } = await run(TIME, ['-f', 'MAXRSS=%M CPU=%U+%S', IM, ...imArgs(file, path.join(out, String(i)), w)], { maxBuffer: 1 << 24 });
    const m = /MAXRSS=(\d+) CPU=([\d.]+)\+([\d.]+)/.exec(stderr)!;
    peak = Math.max(peak, Number(m[1]) / 1024);
    cpuSeconds += Number(m[2]) + Number(m[3]);
  });
  fs.rmSync(out, { recursive: true, force: true });
  return { seconds, cpuSeconds, maxRssMb: peak };
}

function line(label: string, r: Run, thumbs: number): string {
  return `    ${label.padEnd(26)} ${(thumbs / r.seconds).toFixed(1).padStart(7)} thumbs/s  CPU ${((r.cpuSeconds / thumbs) * 1000).toFixed(1).padStart(5)} ms/thumb  peak RSS ${r.maxRssMb.toFixed(0).padStart(4)} MB`;
}

async function speed(w: Workload, files: string[]): Promise<{ vsLoop: number; vsIm: number; cpuVsLoop: number; cpuVsIm: number }> {
  const thumbs = files.length * rounds * Object.keys(w.presets).length;
  console.log(
    `\n== workload ${w.name}: ${files.length} JPEGs x ${rounds} rounds; ${Object.entries(w.presets)
      .map(([n, p]) => `${n} ${p.width}x${p.height} ${p.mode}`)
      .join(', ')}; quality ${w.quality}, sharpen ${w.sharpen}`,
  );
  const vsLoop: number[] = [];
  const vsIm: number[] = [];
  const cpuVsLoop: number[] = [];
  const cpuVsIm: number[] = [];
  for (let pair = 1; pair <= pairs; pair++) {
    // ABAB: the daemon first in odd pairs, last in even ones.
    const order = pair % 2 === 1 ? (['daemon', 'loop', 'im'] as const) : (['im', 'loop', 'daemon'] as const);
    const runs: Partial<Record<'daemon' | 'loop' | 'im', Run>> = {};
    for (const c of order) runs[c] = c === 'im' ? await imContender(w, files) : await nodeContender(c, w, files);
    const { daemon, loop, im } = runs as Record<'daemon' | 'loop' | 'im', Run>;
    vsLoop.push(loop.seconds / daemon.seconds);
    vsIm.push(im.seconds / daemon.seconds);
    cpuVsLoop.push(loop.cpuSeconds / daemon.cpuSeconds);
    cpuVsIm.push(im.cpuSeconds / daemon.cpuSeconds);
    console.log(
      `  pair ${pair}: daemon / plain loop ${(loop.seconds / daemon.seconds).toFixed(2)} (CPU ${(loop.cpuSeconds / daemon.cpuSeconds).toFixed(2)}), daemon / ImageMagick ${(im.seconds / daemon.seconds).toFixed(2)} (CPU ${(im.cpuSeconds / daemon.cpuSeconds).toFixed(2)})`,
    );
    console.log(line('lis_thumbnaild (decode once)', daemon, thumbs));
    console.log(line('plain sharp loop', loop, thumbs));
    console.log(line('ImageMagick (+clone)', im, thumbs));
  }
  return { vsLoop: geomean(vsLoop), vsIm: geomean(vsIm), cpuVsLoop: geomean(cpuVsLoop), cpuVsIm: geomean(cpuVsIm) };
}

/** Eight (by default) interlaced 7000x7000 PNGs, made once and kept under var/. */
async function bigPngs(count: number, side: number): Promise<string[]> {
  const folder = path.join(ROOT, 'var', 'bench-pngs');
  fs.mkdirSync(folder, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const file = path.join(folder, `interlaced-${side}-${i}.png`);
    if (!fs.existsSync(file)) {
      const svg = `<svg width="${side}" height="${side}"><rect width="${side}" height="${side}" fill="rgb(${30 * i},120,200)"/><circle cx="${side / 2}" cy="${side / 2}" r="${side / (3 + i)}" fill="#fff"/></svg>`;
      await sharp(Buffer.from(svg), { limitInputPixels: false }).png({ progressive: true, compressionLevel: 1 }).toFile(file);
    }
    files.push(file);
  }
  return files;
}

async function memory(): Promise<void> {
  const count = flag('png-count', 8);
  const side = flag('png-side', 7000);
  const pngs = await bigPngs(count, side);
  const photos = fs
    .readdirSync(dir)
    .filter((f) => /\.jpe?g$/i.test(f))
    .map((f) => path.join(dir, f));
  const w = WORKLOADS.default;
  console.log(`peak RSS of makeThumbnails in a process of its own (lis_thumbnaild's launch settings), ${lanes} images in flight, ${rounds} rounds`);
  for (const [label, files] of [
    [`${count} interlaced PNGs of ${side}x${side}`, pngs],
    [`${photos.length} photos`, photos],
  ] as const) {
    for (const budget of [config.pixelBudget, Number.MAX_SAFE_INTEGER]) {
      const r = await nodeContender('daemon', w, [...files], budget);
      console.log(
        `  ${label.padEnd(36)} pixel budget ${budget === config.pixelBudget ? `${(budget / 1e6).toFixed(0)} Mpx` : 'off   '}: peak RSS ${r.maxRssMb.toFixed(0)} MB, ${((files.length * rounds) / r.seconds).toFixed(2)} images/s`,
      );
    }
  }
}

async function main(): Promise<void> {
  if (hasSwitch('memory')) return memory();
  const chosen = argOf('workload') ?? 'both';
  if (chosen !== 'both' && !WORKLOADS[chosen]) {
    console.error(`--workload ${chosen}: no such workload (${[...Object.keys(WORKLOADS), 'both'].join(', ')})`);
    process.exit(2);
  }
  const missing = [IM, TIME].filter((tool) => !fs.existsSync(tool));
  if (missing.length) {
    console.error(`bench/thumbnail.ts needs ImageMagick and GNU time from Debian; missing: ${missing.join(', ')}`);
    process.exit(2);
  }
  const files = fs
    .readdirSync(dir)
    .filter((f) => /\.jpe?g$/i.test(f))
    .map((f) => path.join(dir, f))
    .slice(0, flag('images', 1000));
  if (files.length === 0) {
    console.error(`no JPEGs in ${dir} (--dir FOLDER, or LIS_TESTDATA)`);
    process.exit(2);
  }
  console.log(
    `${os.availableParallelism()} cores (load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}), ${lanes} images in flight, ${parallelism.sharpThreads} libvips thread(s) each; ${pairs} interleaved pairs`,
  );
  const workloads = chosen === 'both' ? Object.values(WORKLOADS) : [WORKLOADS[chosen]];
  const ratios: Array<[string, number]> = [];
  for (const w of workloads) {
    const r = await speed(w, files);
    // Wall clock, then CPU time (loop's or ImageMagick's CPU over ours: other load on the machine sways it least).
    ratios.push([`thumbnail ${w.name} daemon / plain sharp loop`, r.vsLoop], [`thumbnail ${w.name} daemon / ImageMagick`, r.vsIm]);
    ratios.push([`thumbnail ${w.name} daemon / plain sharp loop (CPU)`, r.cpuVsLoop], [`thumbnail ${w.name} daemon / ImageMagick (CPU)`, r.cpuVsIm]);
    if (!hasSwitch('no-quality')) ratios.push(...(await quality(w, files, config)));
  }
  console.log('');
  for (const [name, ratio] of ratios) printRatio(name, ratio);
}

const child = argOf('child');
if (child !== undefined) {
  const { files, workload, pixelBudget } = JSON.parse(fs.readFileSync(argOf('list')!, 'utf8')) as { files: string[]; workload: Workload; pixelBudget: number };
  await childMain(child, workload, files, pixelBudget);
} else {
  await main();
}
