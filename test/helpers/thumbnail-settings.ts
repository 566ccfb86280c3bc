import assert from 'node:assert/strict';
import { thumbnailConfigSchema, type ThumbnailConfig } from '../../src/config/thumbnail-config.ts';
import { ImageError } from '../../src/thumbnail/image-error.ts';
import type { ThumbnailSettings } from '../../src/thumbnail/make-thumbnails.ts';
import { resolveDetails } from '../../src/thumbnail/process-details.ts';

/** The thumbnail section of a config with nothing set: its defaults. */
export const THUMBNAIL_DEFAULTS: ThumbnailConfig = thumbnailConfigSchema.parse({});

/** makeThumbnails' settings from the defaults: no sharpening, gamma 1, quality 82 unless `details` says; `more` over all. */
export function settings(details: { sharpen?: string; gamma?: number; quality?: number } = {}, more: Partial<ThumbnailSettings> = {}): ThumbnailSettings {
  const config = THUMBNAIL_DEFAULTS;
  return {
    presets: config.presets,
    details: resolveDetails({ sharpen: details.sharpen ?? 'none', gamma: details.gamma ?? 1, quality: details.quality ?? 82 }, config.defaults),
    twins: config.twins,
    maxPixels: config.maxPixels,
    timeoutSeconds: config.timeoutSeconds,
    failOn: config.failOn,
    ...more,
  };
}

/** The ImageError `promise` fails with; a failure of the test if it fails otherwise, or not at all. */
export async function rejection(promise: Promise<unknown>): Promise<ImageError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ImageError, `expected an ImageError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the image to be refused');
}
