/**
 * What `live_images.image_data` holds once a row is thumbnailed: what the
 * search API needs, and which files the pusher sends. Paths are relative to
 * a thumbnail root (the store, or a frontend's root): `uk/a3/0f/<hash>_small.jpg`.
 */
export interface ImageData {
  original: { width: number; height: number; format: string; bytes: number };
  /** SHA-256 (hex) of the original's bytes: identical images at different URLs share it. */
  contentHash: string;
  presets: Record<string, PresetFile>;
  /** Which thumbnailing of the row made the files (absent: 1); part of the file names from 2 on. */
  version?: number;
  /**
   * The datasource's process details in force when the files were made (absent: made before they were
   * recorded): `lis rethumbnail --stale` takes the images made with other settings than those now in force.
   */
  details?: { sharpen: string; gamma: number; quality: number };
  /** `#rrggbb` */
  dominantColor?: string;
  /** A tiny blurred stand-in shown while the thumbnail loads. */
  placeholder?: { type: 'thumbhash' | 'blurhash'; data: string };
  [more: string]: unknown;
}

export interface PresetFile {
  width: number;
  height: number;
  bytes: number;
  /** The JPEG, relative to a thumbnail root. */
  path: string;
  /** Optional twins of the same picture in other formats (`webp`, `avif`), when switched on. */
  twins?: Record<string, { path: string; bytes: number }>;
}

/** Every file of a row the frontends must have, relative to a thumbnail root. */
export function thumbnailFilesOf(imageData: ImageData | null | undefined): string[] {
  if (!imageData?.presets) return [];
  return Object.values(imageData.presets).flatMap((p) => [p.path, ...Object.values(p.twins ?? {}).map((t) => t.path)]);
}
