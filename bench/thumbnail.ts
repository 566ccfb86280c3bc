// Thumbnails/s on the same images and sizes, in one run: lis_thumbnaild's
// makeThumbnails (decode once, derive every preset), a plain sharp loop (one
// pipeline per size), GraphicsMagick (one process per size) and ImageMagick
// (one process per image, -thumbnail with the JPEG size hint, every size from
// one decode via +clone). Each contender keeps as many images in flight as
// there are cores, and runs in processes of its own so that peak RSS is its own.
// Then bytes and SSIM of this daemon's large thumbnail against ImageMagick's at
// the same quality, both compared with a reference resize of the original.
//   node --import tsx bench/thumbnail.ts [--rounds 5] [--dir FOLDER_OF_JPEGS]
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp, { type Sharp } from 'sharp';
import { thumbnailConfigSchema, type Preset } from '../src/config/thumbnail-config.ts';
import { makeThumbnails } from '../src/thumbnail/make-thumbnails.ts';
import { presetGeometry } from '../src/thumbnail/preset-geometry.ts';
import { resolveDetails } from '../src/thumbnail/process-details.ts';
import { applySharpSettings, parallelismFor } from '../src/thumbnail/sharp-settings.ts';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const IM = '/usr/bin/convert'; // not /usr/local/bin/convert: on some machines that is a stand-in
const GM = '/usr/bin/gm';
const TIME = '/usr/bin/time';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const rounds = Number(arg('rounds', '5'));
/** Each contender runs this many times, interleaved; the best run counts (other load on the machine only slows). */
const repeat = Number(arg('repeat', '3'));
const dir = path.resolve(ROOT, arg('dir', '../shared/testdata/exif-orientation'));
const files = fs.readdirSync(dir).filter((f) => /\.jpe?g$/i.test(f)).map((f) => path.join(dir, f));
const config = thumbnailConfigSchema.parse({});
const presets = config.presets;
const QUALITY = config.defaults.quality;
const SHARPEN = config.defaults.sharpen; // 0x0.5: the same for every contender
// The plain loop sharpens as ImageMagick does, with the same mask as the daemon: the same thumbnails.
const SHARPEN_KERNEL = resolveDetails({ sharpen: SHARPEN, gamma: 1, quality: QUALITY }, config.defaults).sharpenKernel;
const parallelism = parallelismFor({
  imagesInFlight: process.argv.includes('--in-flight') ? Number(arg('in-flight', '1')) : null,
  sharpThreads: process.argv.includes('--threads') ? Number(arg('threads', '1')) : null,
});
const lanes = parallelism.imagesInFlight;

type Contender = 'daemon' | 'sharp-loop';

/** Runs `work` over every image `rounds` times with `lanes` in flight; seconds taken. */
async function drive(work: (file: string, index: number) => Promise<void>): Promise<number> {
  const jobs = Array.from({ length: rounds }, () => files).flat();
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: lanes }, async () => {
    while (next < jobs.length) {
      const i = next++;
      await work(jobs[i], i);
    }
  }));
  return (performance.now() - started) / 1000;
}

/** In a child process: one node contender; prints its seconds and peak RSS as JSON. */
async function childMain(contender: Contender): Promise<void> {
  applySharpSettings(parallelism);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `bench-${contender}-`));
  const details = resolveDetails({ sharpen: SHARPEN, gamma: 1, quality: QUALITY }, config.defaults);
  const cpuBefore = process.cpuUsage();
  let seconds: number;
  if (contender === 'daemon') {
    seconds = await drive(async (file, i) => {
      const made = await makeThumbnails(await fs.promises.readFile(file), { presets, details, twins: config.twins, maxPixels: config.maxPixels, timeoutSeconds: 60, failOn: config.failOn });
      await Promise.all(Object.entries(made.presets).map(([name, p]) => fs.promises.writeFile(path.join(out, `${i}_${name}.jpg`), p.files[0].data)));
    });
  } else {
    seconds = await drive(async (file, i) => {
      for (const [name, preset] of Object.entries(presets)) {
        await plainSharp(file, preset).toFile(path.join(out, `${i}_${name}.jpg`));
      }
    });
  }
  fs.rmSync(out, { recursive: true, force: true });
  const cpu = process.cpuUsage(cpuBefore);
  process.stdout.write(JSON.stringify({ seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, maxRssMb: process.resourceUsage().maxRSS / 1024 }));
}

/** What one would write without the daemon: a pipeline per size, straight from the file. */
function plainSharp(file: string, preset: Preset): Sharp {
  let p = sharp(file, { failOn: 'warning' }).rotate();
  if (preset.mode === 'crop') p = p.resize(preset.width, preset.height, { fit: 'cover', position: 'attention' });
  else if (preset.mode === 'pad') p = p.resize(preset.width, preset.height, { fit: 'contain', background: '#ffffff' });
  else p = p.resize(preset.width, preset.height, { fit: 'inside', withoutEnlargement: true });
  return p.flatten({ background: '#ffffff' }).convolve(SHARPEN_KERNEL!).jpeg({ quality: QUALITY, mozjpeg: true, progressive: true });
}

/** ImageMagick / GraphicsMagick geometry for a preset mode. */
function magickArgs(preset: Preset): string[] {
  const box = `${preset.width}x${preset.height}`;
  if (preset.mode === 'crop') return ['-thumbnail', `${box}^`, '-gravity', 'center', '-extent', box];
  if (preset.mode === 'pad') return ['-thumbnail', box, '-background', 'white', '-gravity', 'center', '-extent', box];
  return ['-thumbnail', `${box}>`];
}

const largest = Object.values(presets).reduce((a, p) => (p.width * p.height > a.width * a.height ? p : a));
const sizeHint = `${largest.width * 2}x${largest.height * 2}`;

function imArgs(file: string, out: string): string[] {
  const args = ['-define', `jpeg:size=${sizeHint}`, file, '-auto-orient', '-strip'];
  for (const [name, preset] of Object.entries(presets)) {
    args.push('(', '+clone', ...magickArgs(preset), '-sharpen', SHARPEN, '-quality', String(QUALITY), '-interlace', 'JPEG', '-write', `${out}_${name}.jpg`, '+delete', ')');
  }
  return [...args, 'null:'];
}

function gmArgs(file: string, out: string, name: string, preset: Preset): string[] {
  return ['convert', '-size', sizeHint, file, '-auto-orient', ...magickArgs(preset), '-sharpen', SHARPEN, '-quality', String(QUALITY), '-interlace', 'Line', '+profile', '*', `${out}_${name}.jpg`];
}

/** Runs a command under /usr/bin/time; its peak RSS in MB and CPU seconds. */
async function timed(command: string, args: string[]): Promise<{ rssMb: number; cpuSeconds: number }> {
  const { stderr } = await run(TIME, ['-f', 'MAXRSS=%M CPU=%U+%S', command, ...args], { maxBuffer: 1 << 24 });
  const m = /MAXRSS=(\d+) CPU=([\d.]+)\+([\d.]+)/.exec(stderr)!;
  return { rssMb: Number(m[1]) / 1024, cpuSeconds: Number(m[2]) + Number(m[3]) };
}

async function cliContender(label: 'graphicsmagick' | 'imagemagick'): Promise<Run> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `bench-${label}-`));
  let peak = 0;
  let cpuSeconds = 0;
  const note = (r: { rssMb: number; cpuSeconds: number }) => {
    peak = Math.max(peak, r.rssMb);
    cpuSeconds += r.cpuSeconds;
  };
  const seconds = await drive(async (file, i) => {
    const base = path.join(out, String(i));
    if (label === 'imagemagick') note(await timed(IM, imArgs(file, base)));
    else for (const [name, preset] of Object.entries(presets)) note(await timed(GM, gmArgs(file, base, name, preset)));
  });
  fs.rmSync(out, { recursive: true, force: true });
  return { seconds, cpuSeconds, maxRssMb: peak };
}

/** One run of a contender: wall time, CPU time (user + system, less swayed by other load), peak RSS. */
interface Run {
  seconds: number;
  cpuSeconds: number;
  maxRssMb: number;
}

function nodeContender(contender: Contender): Promise<Run> {
  return new Promise((resolve, reject) => {
    const args = ['--child', contender, '--rounds', String(rounds), '--dir', dir, '--in-flight', String(parallelism.imagesInFlight), '--threads', String(parallelism.sharpThreads)];
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (c) => (text += c));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(text)) : reject(new Error(`${contender} exited ${code}`))));
  });
}

/** Mean SSIM of the luma of two same-sized images, over 8x8 windows (Wang et al. constants). */
async function ssim(a: Buffer, b: Buffer, width: number, height: number): Promise<number> {
  const luma = async (img: Buffer) => (await sharp(img).resize(width, height, { fit: 'fill' }).greyscale().raw().toBuffer());
  const [x, y] = [await luma(a), await luma(b)];
  const C1 = (0.01 * 255) ** 2, C2 = (0.03 * 255) ** 2;
  let total = 0, windows = 0;
  for (let wy = 0; wy + 8 <= height; wy += 4) {
    for (let wx = 0; wx + 8 <= width; wx += 4) {
      let sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
      for (let j = 0; j < 8; j++) for (let i = 0; i < 8; i++) {
        const p = x[(wy + j) * width + wx + i], q = y[(wy + j) * width + wx + i];
        sx += p; sy += q; sxx += p * p; syy += q * q; sxy += p * q;
      }
      const n = 64, mx = sx / n, my = sy / n;
      const vx = sxx / n - mx * mx, vy = syy / n - my * my, cxy = sxy / n - mx * my;
      total += ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
      windows++;
    }
  }
  return total / windows;
}

interface Quality {
  daemonBytes: number;
  imBytes: number;
  plainBytes: number;
  daemonSsim: number;
  imSsim: number;
  plainSsim: number;
}

/** Bytes and SSIM of each size: this daemon vs ImageMagick, both against a reference (lanczos3, no sharpening, lossless). */
async function quality(): Promise<Record<string, Quality>> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-quality-'));
  const result: Record<string, Quality> = {};
  const details = resolveDetails({ sharpen: SHARPEN, gamma: 1, quality: QUALITY }, config.defaults);
  for (const name of Object.keys(presets)) result[name] = { daemonBytes: 0, imBytes: 0, plainBytes: 0, daemonSsim: 0, imSsim: 0, plainSsim: 0 };
  for (const file of files) {
    const original = fs.readFileSync(file);
    const made = await makeThumbnails(original, { presets, details, twins: config.twins, maxPixels: config.maxPixels, timeoutSeconds: 60, failOn: config.failOn });
    const base = path.join(out, 'im');
    await run(IM, imArgs(file, base));
    const upright = await sharp(original).rotate().toBuffer();
    const { width: ow, height: oh } = await sharp(upright).metadata();
    for (const [name, preset] of Object.entries(presets)) {
      const ours = made.presets[name].files[0].data;
      const theirs = fs.readFileSync(`${base}_${name}.jpg`);
      const g = presetGeometry({ width: ow!, height: oh! }, preset);
      // The reference: the same framing, straight from the full original, no sharpening, kept lossless.
      let ref = sharp(upright);
      if (preset.mode === 'crop') ref = ref.resize(g.width, g.height, { fit: 'cover' });
      else if (preset.mode === 'pad') ref = ref.resize(g.width, g.height, { fit: 'contain', background: '#ffffff' });
      else ref = ref.resize(g.width, g.height, { fit: 'fill' });
      const reference = await ref.png().toBuffer();
      // A crop is judged against a reference of its own framing: ours cuts by attention, ImageMagick's at the centre.
      const ourReference = preset.mode === 'crop' ? await sharp(upright).resize(g.width, g.height, { fit: 'cover', position: 'attention' }).png().toBuffer() : reference;
      const plain = await plainSharp(file, preset).toBuffer();
      result[name].daemonBytes += ours.length;
      result[name].imBytes += theirs.length;
      result[name].plainBytes += plain.length;
      result[name].daemonSsim += (await ssim(ours, ourReference, g.width, g.height)) / files.length;
      result[name].imSsim += (await ssim(theirs, reference, g.width, g.height)) / files.length;
      result[name].plainSsim += (await ssim(plain, ourReference, g.width, g.height)) / files.length;
    }
  }
  fs.rmSync(out, { recursive: true, force: true });
  return result;
}

async function main(): Promise<void> {
  const missing = [IM, GM, TIME].filter((tool) => !fs.existsSync(tool));
  if (missing.length) {
    console.error(`bench/thumbnail.ts needs ImageMagick, GraphicsMagick and GNU time from Debian; missing: ${missing.join(', ')}\n  apt-get update && apt-get install -y imagemagick graphicsmagick time`);
    process.exit(2);
  }
  if (files.length === 0) {
    console.error(`no JPEGs in ${dir}`);
    process.exit(2);
  }
  const thumbs = files.length * rounds * Object.keys(presets).length;
  console.log(`${files.length} JPEGs x ${rounds} rounds from ${dir}; sizes ${Object.entries(presets).map(([n, p]) => `${n} ${p.width}x${p.height} ${p.mode}`).join(', ')}`);
  console.log(`quality ${QUALITY}, sharpen ${SHARPEN}; ${os.availableParallelism()} cores, ${lanes} images in flight, ${parallelism.sharpThreads} libvips thread(s) each\n`);
  const contenders: Array<[string, () => Promise<Run>]> = [
    ['lis_thumbnaild (decode once)', () => nodeContender('daemon')],
    ['plain sharp loop (pipeline per size)', () => nodeContender('sharp-loop')],
    ['GraphicsMagick (process per size)', () => cliContender('graphicsmagick')],
    ['ImageMagick (process per image, +clone)', () => cliContender('imagemagick')],
  ];
  const runs = new Map<string, Run[]>(contenders.map(([label]) => [label, []]));
  for (let r = 0; r < repeat; r++) {
    for (const [label, go] of contenders) runs.get(label)!.push(await go());
  }
  const results = contenders.map(([label]) => {
    const all = runs.get(label)!;
    const cpu = all.map((x) => x.cpuSeconds).sort((a, b) => a - b);
    return [label, {
      seconds: Math.min(...all.map((x) => x.seconds)),
      cpuMsPerThumb: (cpu[Math.floor(cpu.length / 2)] / thumbs) * 1000,
      maxRssMb: Math.max(...all.map((x) => x.maxRssMb)),
      rates: all.map((x) => thumbs / x.seconds),
    }] as const;
  });
  const ours = thumbs / results[0][1].seconds;
  const ourCpu = results[0][1].cpuMsPerThumb;
  console.log(`contender                                  thumbs/s   vs ours   CPU ms/thumb   vs ours   peak RSS/process   (thumbs/s: best of ${repeat}; CPU: median; every run)`);
  for (const [label, r] of results) {
    const rate = thumbs / r.seconds;
    console.log(`${label.padEnd(42)} ${rate.toFixed(1).padStart(8)} ${(ours / rate).toFixed(2).padStart(8)}x ${r.cpuMsPerThumb.toFixed(1).padStart(12)} ${(r.cpuMsPerThumb / ourCpu).toFixed(2).padStart(8)}x ${r.maxRssMb.toFixed(0).padStart(12)} MB   (${r.rates.map((x) => x.toFixed(1)).join(', ')})`);
  }
  console.log('\n(vs ours: how many times faster lis_thumbnaild is)\n');
  console.log('size     bytes: ours / ImageMagick / plain sharp        SSIM vs a reference resize: ours / ImageMagick / plain sharp');
  for (const [name, q] of Object.entries(await quality())) {
    console.log(`${name.padEnd(8)} ${String(q.daemonBytes).padStart(8)} / ${String(q.imBytes).padStart(8)} (${((q.daemonBytes / q.imBytes) * 100).toFixed(0)} %) / ${String(q.plainBytes).padStart(8)}   ${q.daemonSsim.toFixed(4)} / ${q.imSsim.toFixed(4)} / ${q.plainSsim.toFixed(4)}`);
  }
}

const child = process.argv.indexOf('--child');
if (child >= 0) await childMain(process.argv[child + 1] as Contender);
else await main();
