import type { Preset } from '../config/thumbnail-config.ts';

export interface Size {
  width: number;
  height: number;
}

/** What a preset makes of an upright original: the file's size and, for pad, the picture inside it. */
export interface PresetGeometry extends Size {
  /** The picture's own size: equal to the file's except for pad, where white fills the rest. */
  inner: Size;
}

const scaled = (size: Size, scale: number): Size => ({
  width: Math.max(1, Math.round(size.width * scale)),
  height: Math.max(1, Math.round(size.height * scale)),
});

/**
 * The scale a preset needs of an original: the factor that fits it inside the
 * box (resize, never above 1; pad) or makes it cover the box (crop).
 */
export function presetScale(original: Size, preset: Preset): number {
  const x = preset.width / original.width;
  const y = preset.height / original.height;
  if (preset.mode === 'crop') return Math.max(x, y);
  const inside = Math.min(x, y);
  return preset.mode === 'resize' ? Math.min(1, inside) : inside;
}

/**
 * The documented sizes, for an upright original of `original` pixels:
 * - resize: fits inside the box, aspect kept, never enlarged (a small original keeps its size);
 * - crop: exactly the box; scaled to cover it (enlarged if need be), the overflow cut away;
 * - pad: exactly the box; the picture fits inside it (enlarged if need be), centred on white.
 */
export function presetGeometry(original: Size, preset: Preset): PresetGeometry {
  const scale = presetScale(original, preset);
  if (preset.mode === 'resize') {
    const size = scaled(original, scale);
    return { ...size, inner: size };
  }
  const inner = preset.mode === 'pad' ? clampTo(scaled(original, scale), preset) : { width: preset.width, height: preset.height };
  return { width: preset.width, height: preset.height, inner };
}

function clampTo(size: Size, box: Size): Size {
  return { width: Math.min(size.width, box.width), height: Math.min(size.height, box.height) };
}

/**
 * The one decoded size every preset is derived from: the original scaled by
 * the largest factor any preset needs, never above the original itself. The
 * decoder can shrink on load to about this (JPEG: by 1/2, 1/4, 1/8) so the full
 * image is never held in memory.
 */
export function workingSize(original: Size, presets: Preset[]): Size {
  const scale = Math.min(1, Math.max(...presets.map((p) => presetScale(original, p))));
  return scaled(original, scale);
}

/** Width and height as shown: EXIF orientations 5-8 turn the picture a quarter. */
export function uprightSize(stored: Size, orientation: number | undefined): Size {
  return orientation !== undefined && orientation >= 5 && orientation <= 8 ? { width: stored.height, height: stored.width } : stored;
}

/** A region of a picture, in its pixels. */
export interface Region extends Size {
  left: number;
  top: number;
}

/**
 * How many boxes' worth of covering picture a crop's attention search may look through. Ordinary
 * pictures, panoramas included, overflow a box by a small factor (a 3:2 photo in a 4:3 box by 1.125, a
 * 10:1 panorama by 7.5) and keep their whole picture.
 */
export const CROP_SEARCH_BOXES = 8;

/**
 * The part of a picture (`size`, upright) a crop preset is cut from: the whole picture, unless covering
 * the box would make it more than CROP_SEARCH_BOXES boxes long; then its middle, that many boxes long.
 * sharp scales the whole picture to cover the box before its attention strategy searches it, so a
 * strip of 1x30000 pixels became 120x3,600,000 for a 120x90 box (24 s of CPU for a picture of 30,000
 * pixels, and ten times that for ten times the strip, unbounded by thumbnail.timeoutSeconds). Pure.
 */
export function cropWindow(size: Size, box: Size): Region {
  const scale = Math.max(box.width / size.width, box.height / size.height);
  const longest = (boxSide: number) => Math.max(1, Math.round((CROP_SEARCH_BOXES * boxSide) / scale));
  if (size.width * scale > CROP_SEARCH_BOXES * box.width) {
    const width = longest(box.width);
    return { left: Math.floor((size.width - width) / 2), top: 0, width, height: size.height };
  }
  if (size.height * scale > CROP_SEARCH_BOXES * box.height) {
    const height = longest(box.height);
    return { left: 0, top: Math.floor((size.height - height) / 2), width: size.width, height };
  }
  return { left: 0, top: 0, ...size };
}
