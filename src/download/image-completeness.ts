import type { ImageFormat } from './magic-sniff.ts';

/**
 * Whether a body that arrived in full looks structurally finished. Only a
 * doubt, never a verdict: many complete files have a damaged trailer (a GIF
 * without its final 0x3B, a PNG with a mangled IEND type, a JPEG ending FF C9)
 * and decode perfectly, so a file flagged here goes to the decoder, which
 * decides (see decoder-verdict.ts). A transfer cut short is told by the
 * transfer itself (bytes against Content-Length, the chunked end), not here.
 * Fed chunk by chunk while streaming, so nothing is buffered; pure.
 *
 * JPEG: the segments are walked to the end-of-image marker (bytes after it are
 * allowed: some cameras append data). PNG: the chunks are walked to IEND.
 * WebP: the RIFF size must be there. GIF: the trailer byte must end it.
 * TIFF, AVIF and HEIF are not checked (their structure can point anywhere in
 * the file); the thumbnailer's decoder is the last word on those.
 */
export interface CompletenessCheck {
  push(chunk: Uint8Array): void;
  /** Null when the image looks whole; else why not. */
  verdict(): string | null;
}

export function completenessCheck(format: ImageFormat): CompletenessCheck {
  switch (format) {
    case 'jpeg':
      return new JpegWalker();
    case 'png':
      return new PngWalker();
    case 'webp':
      return new WebpSize();
    case 'gif':
      return new GifTrailer();
    default:
      return { push() {}, verdict: () => null };
  }
}

const isRestart = (b: number) => b >= 0xd0 && b <= 0xd7;
/** Markers with no length field. */
const isStandalone = (b: number) => b === 0xd8 || b === 0x01 || isRestart(b);

type JpegState = 'seek' | 'code' | 'len0' | 'len1' | 'skip' | 'entropy' | 'entropyFF' | 'done';

class JpegWalker implements CompletenessCheck {
  private state: JpegState = 'seek';
  private marker = 0;
  private length = 0;
  private remaining = 0;

  push(chunk: Uint8Array): void {
    let i = 0;
    const n = chunk.length;
    while (i < n && this.state !== 'done') {
      const b = chunk[i];
      switch (this.state) {
        case 'seek': {
          // Like libjpeg, stray bytes between segments are skipped rather than fatal.
          const at = chunk.indexOf(0xff, i);
          if (at < 0) return;
          i = at + 1;
          this.state = 'code';
          continue;
        }
        case 'code':
          i++;
          this.onMarker(b);
          continue;
        case 'len0':
          this.length = b << 8;
          this.state = 'len1';
          i++;
          continue;
        case 'len1':
          this.length |= b;
          this.remaining = Math.max(0, this.length - 2);
          this.state = 'skip';
          i++;
          if (this.remaining === 0) this.afterSegment();
          continue;
        case 'skip': {
          const take = Math.min(this.remaining, n - i);
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) this.afterSegment();
          continue;
        }
        case 'entropy': {
          const at = chunk.indexOf(0xff, i);
          if (at < 0) return;
          i = at + 1;
          this.state = 'entropyFF';
          continue;
        }
        case 'entropyFF':
          i++;
          if (b === 0x00 || isRestart(b)) this.state = 'entropy';
          else if (b !== 0xff) this.onMarker(b);
          continue;
      }
    }
  }

  private onMarker(code: number): void {
    if (code === 0xff) return; // fill byte: the code follows
    if (code === 0xd9) this.state = 'done';
    else if (isStandalone(code)) this.state = 'seek';
    else {
      this.marker = code;
      this.state = 'len0';
    }
  }

  private afterSegment(): void {
    this.state = this.marker === 0xda ? 'entropy' : 'seek';
  }

  verdict(): string | null {
    return this.state === 'done' ? null : 'JPEG ends without its end-of-image marker';
  }
}

class PngWalker implements CompletenessCheck {
  private offset = 0;
  /** Bytes of the current chunk's length and type, once 8 are in. */
  private header: number[] = [];
  private remaining = 0;
  private sawEnd = false;
  private ended = false;

  push(chunk: Uint8Array): void {
    let i = 0;
    if (this.offset < 8) {
      const skip = Math.min(8 - this.offset, chunk.length);
      this.offset += skip;
      i = skip;
    }
    while (i < chunk.length && !this.ended) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - i);
        this.remaining -= take;
        i += take;
        if (this.remaining === 0 && this.sawEnd) this.ended = true;
        continue;
      }
      this.header.push(chunk[i++]);
      if (this.header.length === 8) {
        const [a, b, c, d, ...type] = this.header;
        const length = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
        this.sawEnd = String.fromCharCode(...type) === 'IEND';
        this.remaining = length + 4; // data and CRC
        this.header = [];
      }
    }
  }

  verdict(): string | null {
    return this.ended ? null : 'PNG ends before its IEND chunk';
  }
}

class WebpSize implements CompletenessCheck {
  private head: number[] = [];
  private total = 0;

  push(chunk: Uint8Array): void {
    for (let i = 0; this.head.length < 8 && i < chunk.length; i++) this.head.push(chunk[i]);
    this.total += chunk.length;
  }

  verdict(): string | null {
    if (this.head.length < 8) return 'WebP shorter than its header';
    const size = (this.head[4] | (this.head[5] << 8) | (this.head[6] << 16) | (this.head[7] << 24)) >>> 0;
    return this.total >= size + 8 ? null : `WebP has ${this.total} of the ${size + 8} bytes its header declares`;
  }
}

class GifTrailer implements CompletenessCheck {
  private last = -1;

  push(chunk: Uint8Array): void {
    if (chunk.length) this.last = chunk[chunk.length - 1];
  }

  verdict(): string | null {
    return this.last === 0x3b ? null : 'GIF ends without its trailer byte';
  }
}
