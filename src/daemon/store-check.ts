import { constants } from 'node:fs';
import { access, link, open, readdir, stat, statfs, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempPathFor } from '../store/atomic-file.ts';
import { tempFileVerdict } from '../store/stale-temp.ts';
import { makeFolders } from '../store/make-folders.ts';

export interface StoreLimits {
  /** Pause below this many free bytes (stores.minFreeBytes). */
  minFreeBytes: number;
  /** ... or below this share of the file system free (stores.minFreePercent). */
  minFreePercent: number;
}

export interface StoreHealth {
  dir: string;
  ok: boolean;
  /** Why not, with the real errno first (`ENOSPC: ...`, `EROFS: ...`): never Node's ENOENT from a recursive mkdir. */
  reason: string | null;
  freeBytes: number | null;
  totalBytes: number | null;
}

/** The folder itself, or its nearest existing parent: where statfs can look before the store is made. */
async function statfsNearest(dir: string): Promise<Awaited<ReturnType<typeof statfs>>> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    try {
      return await statfs(d);
    } catch (error) {
      if (path.dirname(d) === d) throw error;
    }
  }
}

const PROBE_BYTES = 4096;

/**
 * Pure: whether free space is under the minimum, and the reason. Used before
 * the probe so that a stage pauses before the disk is full, not after.
 */
export function spaceVerdict(dir: string, freeBytes: number, totalBytes: number, limits: StoreLimits): string | null {
  if (freeBytes <= 0) return `ENOSPC: no space left on the file system of ${dir}`;
  const percent = totalBytes > 0 ? (freeBytes / totalBytes) * 100 : 100;
  if (freeBytes < limits.minFreeBytes) return `low space: ${freeBytes} bytes free on ${dir}, under stores.minFreeBytes (${limits.minFreeBytes})`;
  if (percent < limits.minFreePercent) return `low space: ${percent.toFixed(2)}% free on ${dir}, under stores.minFreePercent (${limits.minFreePercent}%)`;
  return null;
}

/**
 * Can the stage write this store? Free space by statfs against the limits,
 * then a real write (a small file, fsync, unlink), whose error code is the
 * true one: a recursive mkdir on a full or read-only disk says ENOENT.
 */
export async function checkStore(dir: string, limits: StoreLimits, expectsFiles?: () => Promise<boolean>): Promise<StoreHealth> {
  let freeBytes: number;
  let totalBytes: number;
  try {
    const fs = await statfsNearest(dir);
    freeBytes = Number(fs.bavail) * Number(fs.bsize);
    totalBytes = Number(fs.blocks) * Number(fs.bsize);
  } catch (error) {
    return { dir, ok: false, reason: `${codeOf(error)}: cannot statfs ${dir}: ${(error as Error).message}`, freeBytes: null, totalBytes: null };
  }
  const low = spaceVerdict(dir, freeBytes, totalBytes, limits);
  if (low) return { dir, ok: false, reason: low, freeBytes, totalBytes };
  // Named as our temp files are (the writer's pid in the name): a probe a killed process left is swept here.
  const probe = tempPathFor(path.join(dir, PROBE_NAME));
  try {
    // Not a bare recursive mkdir: on a read-only or full disk it says ENOENT, and the pause line would too.
    await makeFolders(dir);
    await sweepDeadProbes(dir);
    const unmounted = expectsFiles ? await checkStoreMarker(dir, expectsFiles) : null;
    if (unmounted) return { dir, ok: false, reason: unmounted, freeBytes, totalBytes };
    const handle = await open(probe, 'w');
    try {
      await handle.writeFile(Buffer.alloc(PROBE_BYTES));
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    return { dir, ok: false, reason: `${codeOf(error)}: cannot write ${dir}: ${(error as Error).message}`, freeBytes, totalBytes };
  } finally {
    await unlink(probe).catch(() => {});
  }
  return { dir, ok: true, reason: null, freeBytes, totalBytes };
}

/**
 * Can the stage read this folder of a store? It must be there, as a folder we may list and enter. A store
 * that is not mounted (or was emptied) has no country folder: every file would be "not found", and each
 * row would be sent back a stage for a file that was never lost. Returns why not, or null.
 */
export async function checkReadable(dir: string): Promise<string | null> {
  try {
    if (!(await stat(dir)).isDirectory()) return `ENOTDIR: ${dir} is not a folder`;
    await access(dir, constants.R_OK | constants.X_OK);
    return null;
  } catch (error) {
    if (codeOf(error) !== 'ENOENT') return `${codeOf(error)}: cannot read ${dir}: ${(error as Error).message}`;
    // The way out when the disk is mounted and its files are really gone: said where the operator reads it (the
    // pause line, the store_paused alert), as the frontends' and the writers' own checks say theirs.
    return `ENOENT: cannot read ${dir} (is the store mounted?): ${(error as Error).message}. If its files are really gone (a new, empty disk), make the folder: mkdir -p ${dir}; the rows missing them are then made again, uncharged`;
  }
}

const PROBE_NAME = '.lis-probe';
/** A probe unchanged this long is a killed check's whoever its pid names now. */
const PROBE_SETTLE_SECONDS = 3600;

/** The file at a store's top that says "this is the store" (beside the probes, where fs_check never looks). */
export const STORE_MARKER = '.imagesys-store';

/**
 * How a store's folder stands with its marker: `marked`; `empty` (no marker and nothing in it but probes and `ignored`:
 * a new store, or the folder a disk is mounted on without the disk); `unmarked` (files from before the
 * marker: the store). The folder must exist. One read of the store's top, whose few entries are countries.
 * A frontend's root is judged the same way, by its own marker (src/push/frontend-root-check.ts).
 */
export async function storeMarkState(dir: string, marker = STORE_MARKER, ignored: string[] = []): Promise<'marked' | 'empty' | 'unmarked'> {
  const entries = await readdir(dir);
  if (entries.includes(marker)) return 'marked';
  return entries.some((name) => !name.startsWith(`${PROBE_NAME}.`) && !ignored.includes(name)) ? 'unmarked' : 'empty';
}

/**
 * Is `dir` the store, or the empty folder its disk is mounted on, which a writer would fill instead (the
 * host's own disk) while the files of the rows are on the disk that is not there? A store is marked at its
 * first check. Unmarked and empty while rows of this host have files in it (`expectsFiles`): not mounted,
 * say so. Unmarked otherwise (a new store, or one from before the marker): mark it. Returns why not, or null.
 */
export async function checkStoreMarker(dir: string, expectsFiles: () => Promise<boolean>): Promise<string | null> {
  const marker = path.join(dir, STORE_MARKER);
  const state = await storeMarkState(dir);
  if (state === 'marked') return null;
  // Not known (the database away): neither pause for it nor mark, and look again at the next check.
  const expected = state === 'empty' ? await expectsFiles().catch(() => null) : false;
  if (expected === null) return null;
  // Looked at again after the database answered: a writer beside this one (another of lis_imaged's generations)
  // may have marked the store and finished a row meanwhile, and that row is then no sign of a disk gone.
  if (expected && (await storeMarkState(dir)) === 'marked') return null;
  if (expected)
    return `ENOENT: ${dir} is empty and has no ${STORE_MARKER}, but rows of this host have files there: is its disk mounted? (If its files are really gone, say so: touch ${marker}. If this is a second machine started under this host's name, a config copied, give it its own: "host" in the config, or LIS_HOST.)`;
  await markStore(dir).catch((error: NodeJS.ErrnoException) => {
    // A failed write (ENOSPC: a store full before its first check) names no path: named, a writer tells it for
    // its store's fault (storeErrorOf), not a bug (500, `internal`).
    throw Object.assign(error, { path: error.path ?? marker, syscall: error.syscall ?? 'write' });
  });
  return null;
}

/**
 * Writes the store's marker whole and once: its text goes to a probe-named temp file (swept if we are killed),
 * which is then linked into place. A link never replaces a marker another process made first (EEXIST: theirs
 * stands), and nobody sees the marker half written. Written in place, as before, two daemons of a host starting
 * together on a new store each wrote their own text over the other's, or one read the other's empty file: their
 * identities (storeIdentity, a digest of the text) then differed, and a restarted daemon was refused as "another
 * machine already runs as host" by its own host's workers.
 */
async function markStore(dir: string): Promise<void> {
  const temp = tempPathFor(path.join(dir, PROBE_NAME));
  try {
    await writeFile(temp, `An ImageSys store, marked ${new Date().toISOString()}. Its absence tells an unmounted disk from the store: do not remove.\n`);
    await link(temp, path.join(dir, STORE_MARKER)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  } finally {
    await unlink(temp).catch(() => {});
  }
}

/** The code of assertStoreMounted's error: a store-wide fault (store-write-fault.ts), which pauses the stage. */
export const STORE_UNMARKED = 'ERR_STORE_UNMARKED';

/**
 * For a writer about to make folders missing in a store: throws (code STORE_UNMARKED) when the store is the
 * empty folder of a disk that is not mounted (checkStoreMarker), else returns, the store marked. The stage's
 * guard checks the store before each claim, but the disk may go after (an umount between two writes: nothing
 * holds a file open there), and making the folders again put the files on the host's own disk, in a folder
 * the next check found full and marked as the store. Refused, the write is a store fault: the stage pauses,
 * and its check says why. Marked (the usual case), it costs one access().
 */
export async function assertStoreMounted(dir: string, expectsFiles: () => Promise<boolean>): Promise<void> {
  const marked = await access(path.join(dir, STORE_MARKER)).then(
    () => true,
    () => false,
  );
  if (marked) return;
  await makeFolders(dir);
  const unmounted = await checkStoreMarker(dir, expectsFiles);
  // Named as a file system error is (path, syscall): lis_downloadd tells its store's faults from others by them.
  if (unmounted) throw Object.assign(new Error(unmounted), { code: STORE_UNMARKED, path: dir, syscall: 'mkdir' });
}

/**
 * Probes sit at the store's top, where fs_check (which walks country folders)
 * never looks; so a probe whose writer died (SIGKILL between write and unlink)
 * is removed by the next check, of any process.
 */
async function sweepDeadProbes(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (!name.startsWith(`${PROBE_NAME}.`)) continue;
    // Its writer gone from this host, or unchanged for an hour (a probe lives for a write and an unlink): a killed
    // check's, whatever its pid names now (a daemon in a container is pid 1 there, as the killed one was).
    if (tempFileVerdict(name, path.join(dir, name), { shared: false, settleSeconds: PROBE_SETTLE_SECONDS }) === 'stale')
      await unlink(path.join(dir, name)).catch(() => {});
  }
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : 'EIO';
}
