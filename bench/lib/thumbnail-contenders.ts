// What bench/thumbnail.ts compares: the workloads, the plain sharp loop and ImageMagick's command line.
import sharp, { type Sharp } from 'sharp';
import type { Preset, ThumbnailConfig } from '../../src/config/thumbnail-config.ts';
import { jpegOptions } from '../../src/thumbnail/jpeg-options.ts';
import type { ThumbnailSettings } from '../../src/thumbnail/make-thumbnails.ts';
import { resolveDetails } from '../../src/thumbnail/process-details.ts';

export const IM = '/usr/bin/convert'; // not /usr/local/bin/convert: on some machines that is a stand-in

export interface Workload {
  name: string;
  presets: Record<string, Preset>;
  quality: number;
  sharpen: string;
}

/** `default`: the config's presets and details; `migration`: quality 90, sharpen 0x1, three fit-inside sizes. */
export function workloads(config: ThumbnailConfig): Record<string, Workload> {
  return {
    default: { name: 'default', presets: config.presets, quality: config.defaults.quality, sharpen: config.defaults.sharpen },
    migration: {
      name: 'migration',
      quality: 90,
      sharpen: '0x1',
      presets: {
        large: { width: 1024, height: 768, mode: 'resize' },
        medium: { width: 480, height: 360, mode: 'resize' },
        small: { width: 160, height: 120, mode: 'resize' },
      },
    },
  };
}

export const detailsOf = (w: Workload, config: ThumbnailConfig) => resolveDetails({ sharpen: w.sharpen, gamma: 1, quality: w.quality }, config.defaults);

/** makeThumbnails' settings for a workload: JPEG only (the others make no twins). */
export function settingsOf(w: Workload, config: ThumbnailConfig): ThumbnailSettings {
  return {
    presets: w.presets,
    details: detailsOf(w, config),
    twins: { ...config.twins, webp: false, avif: false },
    maxPixels: config.maxPixels,
    timeoutSeconds: 120,
    failOn: config.failOn,
  };
}

/**
 * What one would write without the daemon: a pipeline per size, straight from the file, with the daemon's
 * sharpening, JPEG settings (src/thumbnail/jpeg-options.ts) and failOn, so that both make the same files.
 */
export function plainSharp(file: string, preset: Preset, w: Workload, config: ThumbnailConfig): Sharp {
  let p = sharp(file, { failOn: config.failOn }).rotate();
  if (preset.mode === 'crop') p = p.resize(preset.width, preset.height, { fit: 'cover', position: 'attention' });
  else if (preset.mode === 'pad') p = p.resize(preset.width, preset.height, { fit: 'contain', background: '#ffffff' });
  else p = p.resize(preset.width, preset.height, { fit: 'inside', withoutEnlargement: true });
  p = p.flatten({ background: '#ffffff' });
  const kernel = detailsOf(w, config).sharpenKernel;
  if (kernel) p = p.convolve(kernel);
  return p.jpeg(jpegOptions(w.quality, preset.width * preset.height));
}

/** ImageMagick geometry for a preset mode. */
function magickArgs(preset: Preset): string[] {
  const box = `${preset.width}x${preset.height}`;
  if (preset.mode === 'crop') return ['-thumbnail', `${box}^`, '-gravity', 'center', '-extent', box];
  if (preset.mode === 'pad') return ['-thumbnail', box, '-background', 'white', '-gravity', 'center', '-extent', box];
  return ['-thumbnail', `${box}>`];
}

/** One ImageMagick process making every preset of `file` from one decode; `lossless`: unsharpened PNGs (its own reference). */
export function imArgs(file: string, out: string, w: Workload, options: { quality?: number; lossless?: boolean; only?: string } = {}): string[] {
  const largest = Object.values(w.presets).reduce((a, p) => (p.width * p.height > a.width * a.height ? p : a));
  const args = ['-define', `jpeg:size=${largest.width * 2}x${largest.height * 2}`, file, '-auto-orient', '-strip'];
  for (const [name, preset] of Object.entries(w.presets)) {
    if (options.only && name !== options.only) continue;
    const encode = options.lossless ? [] : ['-sharpen', w.sharpen, '-quality', String(options.quality ?? w.quality), '-interlace', 'JPEG'];
    args.push('(', '+clone', ...magickArgs(preset), ...encode, '-write', `${out}_${name}.${options.lossless ? 'png' : 'jpg'}`, '+delete', ')');
  }
  return [...args, 'null:'];
}
