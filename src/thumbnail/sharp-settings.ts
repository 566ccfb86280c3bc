import os from 'node:os';
import sharp from 'sharp';
import type { ThumbnailConfig } from '../config/thumbnail-config.ts';

export interface Parallelism {
  /** Images worked at once. */
  imagesInFlight: number;
  /** libvips threads per image. */
  sharpThreads: number;
}

/** sharp runs each image's work on a libuv pool thread; the pool is sized once, at start, from this variable. */
export function libuvPoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.UV_THREADPOOL_SIZE);
  return Number.isInteger(n) && n > 0 ? n : 4;
}

/**
 * From the cores unless configured: two images per core with one libvips
 * thread each (thumbnails are small, so whole images in parallel beat tiles of
 * one image in parallel: see bench/thumbnail.ts). libuv's pool caps the images
 * in flight, so on a machine with more cores than pool threads each image gets
 * more libvips threads instead, and every core is used either way.
 */
export function parallelismFor(
  config: Pick<ThumbnailConfig, 'imagesInFlight' | 'sharpThreads'>,
  cores = os.availableParallelism(),
  poolSize = libuvPoolSize(),
): Parallelism {
  // Twice the cores: while one image waits on file writes or the database, another keeps the CPU busy (measured: +20% on 2 cores).
  const imagesInFlight = config.imagesInFlight ?? Math.max(1, Math.min(cores * 2, poolSize));
  return { imagesInFlight, sharpThreads: config.sharpThreads ?? Math.max(1, Math.ceil(cores / imagesInFlight)) };
}

/**
 * Process-wide sharp settings for a long run: no operation cache (every image
 * is new, so a cache would only hold memory) and the chosen threads per image.
 */
export function applySharpSettings(parallelism: Parallelism): void {
  sharp.cache(false);
  sharp.concurrency(parallelism.sharpThreads);
}
