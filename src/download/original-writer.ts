import crypto from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { makeFolders } from '../store/make-folders.ts';
import { decoderVerdict, type VerdictLimits } from './decoder-verdict.ts';
import { DownloadError } from './download-error.ts';
import { completenessCheck, type CompletenessCheck } from './image-completeness.ts';
import { describeStart, sniffImageFormat, SNIFF_BYTES, type ImageFormat } from './magic-sniff.ts';

export interface WrittenOriginal {
  /** False when the bytes equal the previous original's, which was left as it was. */
  stored: boolean;
  bytes: number;
  contentHash: string;
  format: ImageFormat;
  /** Set when the file looked unfinished and the decoder gave no verdict in time (the thumbnailer judges it): why. */
  unverified?: string;
}

/** What an original may cost: its bytes (download.maxBytes), and the decoder's check of a doubted one. */
export interface WriterLimits extends VerdictLimits {
  maxBytes: number;
  /**
   * Called before making a folder this process has not made (or saw go): throws when the store is the empty folder
   * of a disk not mounted (assertStoreMounted), so the original is not written on the host's own disk.
   */
  beforeMakingFolders?: () => Promise<void>;
}

/**
 * A file system error on our own file, made to name it: a write, fsync or close fails with the errno
 * (ENOSPC, EIO, EDQUOT) but no path, and storeErrorOf tells our disk's faults from the network's by the
 * path (a socket's EPIPE has a syscall and a code too). Unnamed, a full store was recorded as `internal`.
 */
const namingFile =
  (file: string) =>
  (error: unknown): never => {
    if (error && typeof error === 'object' && typeof (error as { code?: unknown }).code === 'string' && !('path' in error))
      Object.assign(error, { path: file });
    throw error;
  };

/** Folders already made by this process: the store has 65,536 per country, so this stays small. */
const madeDirs = new Set<string>();

async function ensureDir(dir: string, beforeMakingFolders?: () => Promise<void>): Promise<void> {
  if (madeDirs.has(dir)) return;
  await beforeMakingFolders?.();
  await makeFolders(dir);
  madeDirs.add(dir);
}

/**
 * The folder of `destination`, made before its source is asked: a store that cannot take the original costs the
 * source no request (a row whose folder could not be made was otherwise fetched at every retry).
 */
export function makeOriginalFolder(destination: string, beforeMakingFolders?: () => Promise<void>): Promise<void> {
  return ensureDir(path.dirname(destination), beforeMakingFolders);
}

/**
 * Streams one original into a temp file beside its final place, and only an
 * image that arrived whole and can be read gets there: the first bytes are sniffed before a
 * file is even made, the size is counted as bytes arrive, the hash is taken
 * on the way, and the temp file is fsynced and renamed at the end (or
 * removed on any failure). Readers see the old original or the new one,
 * never half of one.
 */
export class OriginalWriter {
  private readonly hash = crypto.createHash('sha256');
  private head: Buffer | null = Buffer.alloc(0);
  private format: ImageFormat | null = null;
  private check: CompletenessCheck | null = null;
  private handle: FileHandle | null = null;
  private temp: string | null = null;
  private bytes = 0;

  constructor(
    private readonly destination: string,
    private readonly limits: WriterLimits,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    this.bytes += chunk.length;
    if (this.bytes > this.limits.maxBytes) {
      throw new DownloadError('too_large', `too large: more than ${this.limits.maxBytes} bytes (download.maxBytes)`, { retryable: false });
    }
    this.hash.update(chunk);
    if (this.head) {
      this.head = Buffer.concat([this.head, chunk]);
      if (this.head.length >= SNIFF_BYTES) await this.startFile();
      return;
    }
    this.check!.push(chunk);
    await this.append(chunk);
  }

  /** Commits the file; when its hash equals `previousHash`, leaves the old one and reports `stored: false`. */
  async finish(previousHash?: string | null): Promise<WrittenOriginal> {
    if (this.head) await this.startFile();
    // The transfer was complete (a cut one never gets here), so a retry would bring the same bytes:
    // a file that looks unfinished is the decoder's to judge, and what it cannot read is permanent.
    const doubt = this.check!.verdict();
    const verdict = doubt ? await decoderVerdict(this.temp!, this.limits) : null;
    if (verdict?.kind === 'unreadable')
      throw new DownloadError('corrupt_image', `${doubt}, and the decoder cannot read it: ${verdict.words}`, { retryable: false });
    const contentHash = this.hash.digest('hex');
    const result = {
      bytes: this.bytes,
      contentHash,
      format: this.format!,
      ...(verdict?.kind === 'undecided' ? { unverified: `${doubt}; ${verdict.why}` } : {}),
    };
    if (previousHash && previousHash === contentHash) {
      await this.discard();
      return { stored: false, ...result };
    }
    const handle = this.handle!;
    // Still ours to close (in discard) if the fsync fails.
    await handle.sync().catch(namingFile(this.temp!));
    this.handle = null;
    await handle.close().catch(namingFile(this.temp!));
    await rename(this.temp!, this.destination);
    this.temp = null;
    return { stored: true, ...result };
  }

  /** Removes the temp file, if any; safe to call at any point, and twice. */
  async discard(): Promise<void> {
    const handle = this.handle;
    const temp = this.temp;
    this.handle = null;
    this.temp = null;
    await handle?.close().catch(() => {});
    if (temp) await unlink(temp).catch(() => {});
  }

  private async startFile(): Promise<void> {
    const head = this.head!;
    this.head = null;
    this.format = sniffImageFormat(head);
    if (!this.format) throw new DownloadError('not_image', `not an image (${describeStart(head)})`, { retryable: false });
    this.check = completenessCheck(this.format);
    this.check.push(head);
    const folder = path.dirname(this.destination);
    await ensureDir(folder, this.limits.beforeMakingFolders);
    this.temp = `${this.destination}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    this.handle = await open(this.temp, 'wx').catch(async (error: NodeJS.ErrnoException) => {
      // Made by this process, and gone since (the store emptied, a fresh disk mounted in its place): made again,
      // once. Left cached, every row of that folder failed store_write_failed (its chunk stopped, the rows given
      // back) until the process restarted.
      if (error.code !== 'ENOENT') throw error;
      madeDirs.delete(folder);
      await ensureDir(folder, this.limits.beforeMakingFolders);
      return open(this.temp!, 'wx');
    });
    await this.append(head);
  }

  /**
   * All of `data`, at the end of the temp file. A disk with less room than a write needs takes what fits and says
   * so by the count, not by an error (a short write): `handle.write` alone let a truncated original be fsynced,
   * renamed into place and recorded as whole. `writeFile` on the handle writes on from the current position until
   * every byte is down, so the next write after a short one reports ENOSPC.
   */
  private async append(data: Buffer): Promise<void> {
    await this.handle!.writeFile(data).catch(namingFile(this.temp!));
  }
}
