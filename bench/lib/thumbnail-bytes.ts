// Bytes and SSIM for bench/thumbnail.ts. Every thumbnail is judged against a lossless, unsharpened
// reference of exactly its own framing and size (ours and the plain loop: a sharp lanczos3 resize of the
// upright original, cut as they cut; ImageMagick: its own command without sharpening, as PNG), so no side
// is judged a pixel off. For the large size both are also put at EQUAL SSIM: ImageMagick is run at
// several qualities and its bytes read off its (SSIM, bytes) curve at our SSIM.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import type { Preset, ThumbnailConfig } from '../../src/config/thumbnail-config.ts';
import { makeThumbnails } from '../../src/thumbnail/make-thumbnails.ts';
import { IM, imArgs, plainSharp, settingsOf, type Workload } from './thumbnail-contenders.ts';
import { bytesAtSsim, ssim } from './thumbnail-quality.ts';

const run = promisify(execFile);
const IM_QUALITIES = [60, 70, 80, 85, 90, 95];

/** A lossless reference of `upright` cut as `preset` cuts it, at `size`. */
async function reference(upright: Buffer, preset: Preset, size: { width: number; height: number }, attention: boolean): Promise<Buffer> {
  let p = sharp(upright);
  if (preset.mode === 'crop') p = p.resize(size.width, size.height, { fit: 'cover', position: attention ? 'attention' : 'centre' });
  else if (preset.mode === 'pad') p = p.resize(size.width, size.height, { fit: 'contain', background: '#ffffff' }).flatten({ background: '#ffffff' });
  else p = p.resize(size.width, size.height, { fit: 'fill' });
  return p.png().toBuffer();
}

const sizeOf = async (jpeg: Buffer) => {
  const m = await sharp(jpeg).metadata();
  return { width: m.width, height: m.height };
};

interface Tally {
  ours: number;
  im: number;
  plain: number;
  oursSsim: number;
  imSsim: number;
  plainSsim: number;
}

/** Prints bytes and SSIM per size; returns the ratio lines (bytes at equal SSIM on the largest size). */
export async function quality(w: Workload, files: string[], config: ThumbnailConfig): Promise<Array<[string, number]>> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-quality-'));
  const names = Object.keys(w.presets);
  const largest = names.reduce((a, n) => (w.presets[n].width * w.presets[n].height > w.presets[a].width * w.presets[a].height ? n : a));
  const tally: Record<string, Tally> = Object.fromEntries(names.map((n) => [n, { ours: 0, im: 0, plain: 0, oursSsim: 0, imSsim: 0, plainSsim: 0 }]));
  const curve = IM_QUALITIES.map(() => ({ ssim: 0, bytes: 0 }));
  try {
    for (const file of files) {
      const original = fs.readFileSync(file);
      const upright = await sharp(original).rotate().png({ compressionLevel: 1 }).toBuffer();
      const made = await makeThumbnails(original, settingsOf(w, config));
      const base = path.join(out, 'im');
      await run(IM, imArgs(file, base, w));
      await run(IM, imArgs(file, `${base}-ref`, w, { lossless: true }));
      for (const name of names) {
        const preset = w.presets[name];
        const t = tally[name];
        const ours = made.presets[name].files[0].data;
        const plain = await plainSharp(file, preset, w, config).toBuffer();
        const im = fs.readFileSync(`${base}_${name}.jpg`);
        t.ours += ours.length;
        t.plain += plain.length;
        t.im += im.length;
        t.oursSsim += (await ssim(ours, await reference(upright, preset, await sizeOf(ours), true))) / files.length;
        t.plainSsim += (await ssim(plain, await reference(upright, preset, await sizeOf(plain), true))) / files.length;
        t.imSsim += (await ssim(im, fs.readFileSync(`${base}-ref_${name}.png`))) / files.length;
      }
      // ImageMagick's large size at several qualities, against the same reference as ours (the same framing).
      const ourLarge = made.presets[largest].files[0].data;
      const largeRef = await reference(upright, w.presets[largest], await sizeOf(ourLarge), true);
      for (const [i, q] of IM_QUALITIES.entries()) {
        await run(IM, imArgs(file, `${base}-q${q}`, w, { quality: q, only: largest }));
        const jpeg = fs.readFileSync(`${base}-q${q}_${largest}.jpg`);
        curve[i].bytes += jpeg.length;
        curve[i].ssim += (await ssim(jpeg, largeRef)) / files.length;
      }
    }
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
  console.log(`  bytes (${files.length} images summed) and SSIM against a lossless reference of each one's own framing (mean):`);
  console.log('    size      ours     ImageMagick  plain loop   bytes ours/IM    SSIM ours / IM / plain');
  for (const name of names) {
    const t = tally[name];
    console.log(
      `    ${name.padEnd(8)} ${String(t.ours).padStart(8)} ${String(t.im).padStart(11)} ${String(t.plain).padStart(11)} ${(t.ours / t.im).toFixed(2).padStart(12)}      ${t.oursSsim.toFixed(4)} / ${t.imSsim.toFixed(4)} / ${t.plainSsim.toFixed(4)}`,
    );
  }
  // Ours against the same reference as ImageMagick's curve (the large size is a resize: one framing for both).
  const ourSsim = tally[largest].oursSsim;
  const imBytes = bytesAtSsim(curve, ourSsim);
  console.log(
    `  ${largest} at equal SSIM (${ourSsim.toFixed(4)}): ours ${tally[largest].ours} bytes, ImageMagick ~${Math.round(imBytes)} (its curve: ${curve.map((c, i) => `q${IM_QUALITIES[i]} ${c.ssim.toFixed(4)}/${c.bytes}`).join(', ')})`,
  );
  return [[`thumbnail ${w.name} bytes ours / ImageMagick at equal SSIM (${largest})`, tally[largest].ours / imBytes]];
}
