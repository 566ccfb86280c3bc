import type { Preset } from '../config/thumbnail-config.ts';

/** What a request names, once its path is judged. Pure. */
export type ParsedRequest =
  | { kind: 'thumbnail'; country: string; hash: string; preset: string; ext: 'jpg' | 'webp' | 'avif'; version: number }
  | { kind: 'origin'; origin: string; preset: string; key: string }
  | { kind: 'refused'; status: 400 | 404; reason: string };

const EXTENSIONS = new Set(['jpg', 'webp', 'avif']);
/** `/<country>/<aa>/<bb>/<hash>_<preset>[.v<N>].<ext>`: exactly the layout below a frontend's root (thumbnailRelativePath). */
const THUMBNAIL = /^\/([a-z]{2,3})\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{32})_([a-z][a-z0-9]{0,15})(?:\.v([2-9]|[1-9][0-9]{1,5}))?\.([a-z]{3,4})$/;
/** A key below an origin: plain path segments, none of them `.` or `..`. */
const KEY_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._~+-]{0,254}$/;
/** OpenRoss's modes, as our preset modes (`resizecomp` pads on white). */
const OPENROSS_MODES: Record<string, Preset['mode']> = { crop: 'crop', resize: 'resize', resizecomp: 'pad' };

/**
 * Judges a request path (the raw one, before any decoding): `..`, encoded
 * slashes or dots, backslashes and doubled slashes are 400 before anything
 * else; then a frontend thumbnail path, or `/<origin>/<preset>/<key>`, also
 * as OpenRoss `/<origin>/<W>/<H>/<mode>/<key>` or phizer `/<origin>/<W>x<H>/<key>`
 * when they name a configured preset exactly. Nothing from the path reaches
 * a file name or a URL except through these patterns.
 */
export function parseRequestPath(rawPath: string, presets: Record<string, Preset>, origins: ReadonlySet<string>): ParsedRequest {
  const path = rawPath.split('?')[0];
  if (path.length > 1024) return { kind: 'refused', status: 400, reason: 'path too long' };
  if (/%(2f|5c|2e|00)/i.test(path) || path.includes('\\') || path.includes('//') || /(^|\/)\.\.?(\/|$)/.test(path)) {
    return { kind: 'refused', status: 400, reason: 'bad path: dot segments, encoded slashes or backslashes' };
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return { kind: 'refused', status: 400, reason: 'bad path: broken percent-encoding' };
  }
  const t = THUMBNAIL.exec(decoded);
  if (t) {
    const [, country, aa, bb, hash, preset, version, ext] = t;
    if (hash.slice(0, 2) !== aa || hash.slice(2, 4) !== bb) return { kind: 'refused', status: 404, reason: 'the folders do not match the hash' };
    if (!EXTENSIONS.has(ext)) return { kind: 'refused', status: 404, reason: `no thumbnails in .${ext}` };
    // Own keys only: `constructor` fits the name pattern and `presets.constructor` is Object's, so a plain lookup would
    // take it for a preset and make (and record, and push) `<hash>_constructor.jpg` of any live image.
    if (!Object.hasOwn(presets, preset)) return { kind: 'refused', status: 404, reason: `no preset ${preset}` };
    return { kind: 'thumbnail', country, hash, preset, ext: ext as 'jpg' | 'webp' | 'avif', version: version ? Number(version) : 1 };
  }
  const parts = decoded.split('/').slice(1);
  const origin = parts[0];
  if (!origin || !origins.has(origin)) return { kind: 'refused', status: 404, reason: 'not a thumbnail path, and no such origin' };
  const sized = presetOf(parts.slice(1), presets);
  if (sized.kind === 'refused') return sized;
  const keyParts = parts.slice(1 + sized.used);
  if (keyParts.length === 0 || !keyParts.every((p) => KEY_SEGMENT.test(p))) return { kind: 'refused', status: 400, reason: 'bad key' };
  return { kind: 'origin', origin, preset: sized.preset, key: keyParts.join('/') };
}

/** The preset a path names after the origin, and how many segments that took. */
function presetOf(
  parts: string[],
  presets: Record<string, Preset>,
): { kind: 'preset'; preset: string; used: number } | Extract<ParsedRequest, { kind: 'refused' }> {
  const [a, b, c] = parts;
  if (a !== undefined && Object.hasOwn(presets, a)) return { kind: 'preset', preset: a, used: 1 };
  // Any run of digits is a size: one that names no preset is 400 whatever its length (a 6-digit one is no
  // preset name, and must not fall through to "no preset" 404).
  const phizer = /^(\d+)x(\d+)$/.exec(a ?? '');
  if (phizer) {
    const found = canonical(phizer[1], phizer[2]) && findPreset(presets, Number(phizer[1]), Number(phizer[2]));
    return found ? { kind: 'preset', preset: found, used: 1 } : { kind: 'refused', status: 400, reason: `size ${a} is not a configured preset` };
  }
  if (/^\d+$/.test(a ?? '') && /^\d+$/.test(b ?? '') && c !== undefined) {
    const mode = OPENROSS_MODES[c];
    if (!mode) return { kind: 'refused', status: 400, reason: `mode ${c} is not crop, resize or resizecomp` };
    const found = canonical(a, b) && findPreset(presets, Number(a), Number(b), mode);
    return found ? { kind: 'preset', preset: found, used: 3 } : { kind: 'refused', status: 400, reason: `size ${a}x${b} ${c} is not a configured preset` };
  }
  return { kind: 'refused', status: 404, reason: `no preset ${a ?? ''}` };
}

/**
 * Whether sizes are written the one way (`120`, not `0120`): each thumbnail has one URL, so caches and the
 * frontends' logs see one name for it. A non-canonical size names no preset (400, like any other).
 */
function canonical(...sizes: string[]): boolean {
  return sizes.every((s) => /^[1-9]\d*$/.test(s));
}

function findPreset(presets: Record<string, Preset>, width: number, height: number, mode?: Preset['mode']): string | undefined {
  return Object.entries(presets).find(([, p]) => p.width === width && p.height === height && (mode === undefined || p.mode === mode))?.[0];
}
