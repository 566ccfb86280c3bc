// A minimal ICC v2 matrix/TRC display profile, written byte by byte: a colour space whose conversion
// to sRGB a test can work out by hand, with no profile file from the system.
import { deflateSync } from 'node:zlib';
import { pngChunk } from './thumbnail-fixtures.ts';

/** sRGB's primaries adapted to D50, as every sRGB ICC profile states them (columns of the RGB to XYZ matrix). */
const SRGB_COLORANTS = {
  rXYZ: [0.4361, 0.2225, 0.0139],
  gXYZ: [0.3851, 0.7169, 0.0971],
  bXYZ: [0.1431, 0.0606, 0.7141],
} as const;
const D50 = [0.9642, 1, 0.8249] as const;

const s15Fixed16 = (value: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(Math.round(value * 65536));
  return b;
};
const xyzTag = (xyz: readonly number[]) => Buffer.concat([Buffer.from('XYZ \0\0\0\0', 'latin1'), ...xyz.map(s15Fixed16)]);
const gammaCurve = (gamma: number) => {
  const b = Buffer.alloc(14);
  b.write('curv', 0, 'latin1');
  b.writeUInt32BE(1, 8);
  b.writeUInt16BE(Math.round(gamma * 256), 12);
  return b;
};

/**
 * An RGB display profile with sRGB's primaries and a plain gamma curve: with gamma 1 the samples are
 * linear light, so a sample v becomes sRGB's encoding of v/255 (see srgbOfLinear).
 */
export function gammaRgbProfile(gamma: number): Buffer {
  const tags: Array<[string, Buffer]> = [
    ['wtpt', xyzTag(D50)],
    ...Object.entries(SRGB_COLORANTS).map(([sig, xyz]): [string, Buffer] => [sig, xyzTag(xyz)]),
    ...['rTRC', 'gTRC', 'bTRC'].map((sig): [string, Buffer] => [sig, gammaCurve(gamma)]),
  ];
  let offset = 128 + 4 + 12 * tags.length;
  const table: Buffer[] = [];
  const data: Buffer[] = [];
  for (const [sig, tag] of tags) {
    const entry = Buffer.alloc(12);
    entry.write(sig, 0, 'latin1');
    entry.writeUInt32BE(offset, 4);
    entry.writeUInt32BE(tag.length, 8);
    table.push(entry);
    const padded = Buffer.concat([tag, Buffer.alloc((4 - (tag.length % 4)) % 4)]);
    data.push(padded);
    offset += padded.length;
  }
  const count = Buffer.alloc(4);
  count.writeUInt32BE(tags.length);
  const header = Buffer.alloc(128);
  header.writeUInt32BE(offset, 0);
  header.writeUInt32BE(0x02100000, 8); // version 2.1
  header.write('mntrRGB XYZ ', 12, 'latin1'); // display class, RGB data, XYZ connection space
  header.write('acsp', 36, 'latin1');
  D50.forEach((v, i) => s15Fixed16(v).copy(header, 68 + 4 * i)); // the connection space's illuminant
  return Buffer.concat([header, count, ...table, ...data]);
}

/** sRGB's 8-bit encoding of a linear-light level given on 0-255. */
export function srgbOfLinear(level: number): number {
  const v = level / 255;
  return Math.round(255 * (v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055));
}

/** The PNG with `profile` embedded (an iCCP chunk after IHDR), its samples untouched. */
export function pngWithProfile(png: Buffer, profile: Buffer): Buffer {
  const afterIhdr = 8 + 8 + 13 + 4;
  const iccp = pngChunk('iCCP', Buffer.concat([Buffer.from('test\0\0', 'latin1'), deflateSync(profile)]));
  return Buffer.concat([png.subarray(0, afterIhdr), iccp, png.subarray(afterIhdr)]);
}
