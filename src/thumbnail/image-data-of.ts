import type { ImageData } from '../store/image-data.ts';
import type { Thumbnails } from './make-thumbnails.ts';
import type { ProcessDetails } from './process-details.ts';

/**
 * The `image_data` of a thumbnailed row (the contract in src/store/image-data.ts,
 * plus `perceptualHash`). `pathOf` gives a file's path relative to a thumbnail
 * root; `version` is the thumbnailing's (see thumbnailRelativePath); `details` the datasource's settings
 * it was made with. Pure.
 */
export function imageDataOf(made: Thumbnails, pathOf: (preset: string, ext: string) => string, version = 1, details?: ProcessDetails): ImageData {
  const presets: ImageData['presets'] = {};
  for (const [name, output] of Object.entries(made.presets)) {
    const [jpeg, ...twins] = output.files;
    presets[name] = {
      width: output.width,
      height: output.height,
      bytes: jpeg.data.length,
      path: pathOf(name, jpeg.ext),
      ...(twins.length ? { twins: Object.fromEntries(twins.map((t) => [t.ext, { path: pathOf(name, t.ext), bytes: t.data.length }])) } : {}),
    };
  }
  return {
    original: made.original,
    contentHash: made.contentHash,
    presets,
    dominantColor: made.dominantColor,
    placeholder: { type: 'thumbhash', data: made.thumbHash },
    perceptualHash: made.perceptualHash,
    ...(version > 1 ? { version } : {}),
    ...(details ? { details: { sharpen: details.sharpen, gamma: details.gamma, quality: details.quality } } : {}),
  };
}
