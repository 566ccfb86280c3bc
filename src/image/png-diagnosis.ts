import { crc32 } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Bit depths PNG allows for each colour type (PNG spec, table 11.1). */
const DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

/** True when the bytes were meant to be a PNG, even with a damaged signature (e.g. a text-mode transfer). */
export function looksLikePng(bytes: Buffer): boolean {
  return bytes.subarray(1, 4).toString('latin1') === 'PNG' || bytes.subarray(0, 64).includes('IHDR');
}

/**
 * Says what is wrong with a damaged PNG, for the failure reason: libvips often
 * reports only "corrupt header" or "unsupported image format" with no detail.
 * Null when the structure looks sound (the problem is in the pixel data, or
 * it is not a PNG at all). Pure; reads only chunk headers, lengths and CRCs.
 */
export function diagnosePng(bytes: Buffer): string | null {
  if (!looksLikePng(bytes)) return null;
  if (!bytes.subarray(0, 8).equals(SIGNATURE)) {
    const crlf = bytes.subarray(0, 9).includes(Buffer.from('\r\r')) || !bytes.subarray(0, 8).includes(0x0d);
    return `PNG signature is damaged (${bytes.subarray(0, 8).toString('hex')}${crlf ? ': line endings changed by a text-mode transfer?' : ''})`;
  }
  let offset = 8;
  let seenIdat = false;
  let first = true;
  while (offset < bytes.length) {
    if (offset + 8 > bytes.length) return 'PNG ends inside a chunk header (the file is cut short)';
    const length = bytes.readUInt32BE(offset);
    const type = bytes.subarray(offset + 4, offset + 8).toString('latin1');
    if (!/^[A-Za-z]{4}$/.test(type)) return `PNG chunk at byte ${offset} has an invalid type (${bytes.subarray(offset + 4, offset + 8).toString('hex')})`;
    const end = offset + 12 + length;
    if (end > bytes.length) return `PNG ends inside the ${type} chunk (the file is cut short)`;
    const stored = bytes.readUInt32BE(offset + 8 + length);
    if (crc32(bytes.subarray(offset + 4, offset + 8 + length)) !== stored) return `CRC error in the ${type} chunk`;
    if (first) {
      if (type !== 'IHDR' || length !== 13) return `PNG does not start with an IHDR chunk (found ${type})`;
      const colourType = bytes[offset + 17];
      const depth = bytes[offset + 16];
      if (!(colourType in DEPTHS)) return `IHDR: colour type ${colourType} is not valid`;
      if (!DEPTHS[colourType].includes(depth)) return `IHDR: bit depth ${depth} is not valid for colour type ${colourType}`;
      first = false;
    }
    if (type === 'IDAT') seenIdat = true;
    if (type === 'IEND') return seenIdat ? null : 'PNG has no IDAT chunk (no image data)';
    offset = end;
  }
  return seenIdat ? 'PNG ends without an IEND chunk (the file is cut short)' : 'PNG has no IDAT chunk (no image data)';
}
