import type { ImageData } from '../store/image-data.ts';

/** What the search API shows for one live image. */
export interface SearchApiImage {
  hash: string;
  country: string;
  url: string;
  /** `photo`, `placeholder`, `tiny`, `duplicate`, or a person's class. */
  imageClass: string | null;
  original: { width: number; height: number; format: string; bytes: number };
  /** Per configured preset: where to get it and its size. */
  thumbnails: Record<string, { url: string; width: number; height: number; twins: Record<string, string> }>;
  dominantColor: string | null;
  placeholder: { type: string; data: string } | null;
}

export interface LiveRow {
  image_hash: string;
  country: string;
  image_url: string;
  image_class: string | null;
  image_data: ImageData | null;
}

/** Pure: a live row as the search API shows it; null when it has no thumbnails to show. */
export function toSearchApiImage(row: LiveRow, thumbnailBaseUrl: string): SearchApiImage | null {
  const data = row.image_data;
  if (!data?.presets) return null;
  const base = thumbnailBaseUrl.endsWith('/') ? thumbnailBaseUrl : `${thumbnailBaseUrl}/`;
  const thumbnails: SearchApiImage['thumbnails'] = {};
  for (const [name, p] of Object.entries(data.presets)) {
    thumbnails[name] = {
      url: base + p.path,
      width: p.width,
      height: p.height,
      twins: Object.fromEntries(Object.entries(p.twins ?? {}).map(([format, t]) => [format, base + t.path])),
    };
  }
  return {
    hash: row.image_hash,
    country: row.country,
    url: row.image_url,
    imageClass: row.image_class,
    original: data.original,
    thumbnails,
    dominantColor: data.dominantColor ?? null,
    placeholder: data.placeholder ?? null,
  };
}
