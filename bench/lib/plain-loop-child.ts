// The end-to-end bench's plain sharp loop, in a process of its own for each run, as each system run starts
// daemons of its own. In the bench's own process, its second run was the warmer one (sharp, libvips and the JIT
// already through a thousand images), every second pair's loop 4-11 % faster than the first's, while every system
// run starts cold: the per-pair ratios fell from the first pair to the second in all six runs of session 12.
//   node --import tsx bench/lib/plain-loop-child.ts JOB.json
// JOB.json: { originalsDir, images, outDir, inFlight, workload, thumbnail }. Prints `ready`, starts on a line on
// stdin (so that the parent's clock and machine counters start with the loop, not with loading this process), and
// ends with one line of JSON: { seconds, cpuSeconds }.
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { ThumbnailConfig } from '../../src/config/thumbnail-config.ts';
import { plainSharp, type Workload } from './thumbnail-contenders.ts';

export interface PlainLoopJob {
  originalsDir: string;
  images: number;
  outDir: string;
  inFlight: number;
  workload: Workload;
  thumbnail: ThumbnailConfig;
}

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')) as PlainLoopJob;
const presets = Object.entries(job.workload.presets);
process.stdout.write('ready\n');
await once(process.stdin, 'data');
const started = performance.now();
const cpu = process.cpuUsage();
let next = 0;
await Promise.all(
  Array.from({ length: job.inFlight }, async () => {
    while (next < job.images) {
      const i = next++;
      const file = path.join(job.originalsDir, String(i));
      for (const [name, preset] of presets) await plainSharp(file, preset, job.workload, job.thumbnail).toFile(path.join(job.outDir, `${i}_${name}.jpg`));
    }
  }),
);
const used = process.cpuUsage(cpu);
process.stdout.write(`${JSON.stringify({ seconds: (performance.now() - started) / 1000, cpuSeconds: (used.user + used.system) / 1e6 })}\n`);
process.stdin.destroy();
