import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { decoderWords, isOurShortage } from '../image/decoder-words.ts';

/** What the decoder says of a downloaded file: it reads, it cannot (its words), or no verdict here (why). */
export type DecoderVerdict = { kind: 'reads' } | { kind: 'unreadable'; words: string } | { kind: 'undecided'; why: string };

export interface VerdictLimits {
  /** thumbnail.maxPixels: a file over it is not decoded here (the thumbnailer refuses it from its header). */
  maxPixels: number;
  /**
   * When the download's time (download.timeouts.totalSeconds) runs out, on the monotonic clock (`performance.now()`):
   * a step of the wall clock must not end a download's time early nor stretch it.
   */
  until: number;
  /** A stop: the verdict is abandoned (it rejects). */
  signal?: AbortSignal;
}

/** libvips' words when sharp's timeout() ends a decode. */
const TIMED_OUT = /timeout: \d+% complete/;

/**
 * Whether the decoder reads a downloaded file without a warning: the judge of
 * a complete transfer whose structure looked unfinished (a GIF without its
 * trailer byte, a PNG whose IEND type is mangled, a JPEG ending FF C9), which
 * are often perfectly readable. Decodes through shrink-on-load to a tiny size,
 * so every byte of image data is read but little memory is used.
 *
 * Bounded like the rest of the download: the header is read first, and a file
 * over thumbnail.maxPixels is not decoded at all; the decode gets only what is
 * left of the download's time (sharp's timeout stops libvips, a timer stops the
 * wait even while libvips waits for a thread). No verdict in time is nobody's
 * fault yet: the file was delivered whole, and a slow decode may be our CPU's
 * doing as much as the file's. It is stored `undecided`, and the thumbnailer,
 * with the same failOn, thumbnail.maxPixels and its own timeout, judges it and
 * classifies what it finds (corrupt_image, too_many_pixels, processing_timeout).
 */
export async function decoderVerdict(file: string, limits: VerdictLimits): Promise<DecoderVerdict> {
  const options = { failOn: 'warning', limitInputPixels: false, sequentialRead: true, pages: 1 } as const;
  let pixels: { width: number; height: number };
  try {
    const header = await sharp(file, options).metadata();
    pixels = { width: header.width ?? 0, height: header.height ?? 0 };
  } catch (error) {
    return shortOrUnreadable(file, error);
  }
  if (pixels.width * pixels.height > limits.maxPixels)
    return { kind: 'undecided', why: `${pixels.width}x${pixels.height} is over thumbnail.maxPixels: not decoded here` };
  const leftMs = limits.until - performance.now();
  if (leftMs <= 0) return { kind: 'undecided', why: "not decoded within the download's time (download.timeouts.totalSeconds)" };

  // sharp's timeout is in whole seconds (0 would mean none); the timer below keeps to the exact deadline.
  const decode = sharp(file, options)
    .timeout({ seconds: Math.max(1, Math.floor(leftMs / 1000)) })
    .resize(8, 8, { fit: 'inside' })
    .raw()
    .toBuffer()
    .then((): DecoderVerdict => ({ kind: 'reads' }));
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const outOfTime = new Promise<DecoderVerdict>((resolve, reject) => {
    timer = setTimeout(() => resolve({ kind: 'undecided', why: "not decoded within the download's time (download.timeouts.totalSeconds)" }), leftMs);
    onAbort = () => reject(new Error('stopped during the decoder check', { cause: limits.signal!.reason }));
    limits.signal?.addEventListener('abort', onAbort, { once: true });
    if (limits.signal?.aborted) onAbort();
  });
  // A decode outrun by the deadline or a stop ends by its own timeout, its result unread.
  decode.catch(() => {});
  try {
    return await Promise.race([decode, outOfTime]);
  } catch (error) {
    if (limits.signal?.aborted) throw error;
    if (TIMED_OUT.test(String((error as Error)?.message)))
      return { kind: 'undecided', why: "not decoded within the download's time (download.timeouts.totalSeconds)" };
    return shortOrUnreadable(file, error);
  } finally {
    clearTimeout(timer);
    if (onAbort) limits.signal?.removeEventListener('abort', onAbort);
  }
}

/** The machine ran short (threads, memory, file descriptors): no verdict, not the file's fault; else unreadable. */
export function shortOrUnreadable(file: string, error: unknown): Promise<DecoderVerdict> {
  if (isOurShortage(error))
    return Promise.resolve({ kind: 'undecided', why: `the decoder ran short of our resources: ${String((error as Error)?.message ?? error).split('\n')[0]}` });
  return unreadable(file, error);
}

async function unreadable(file: string, error: unknown): Promise<DecoderVerdict> {
  return { kind: 'unreadable', words: decoderWords(error, await readFile(file).catch(() => Buffer.alloc(0))) };
}
