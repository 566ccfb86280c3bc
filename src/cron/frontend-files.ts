import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PushConfig } from '../config/push-config.ts';
import { LisError } from '../errors.ts';
import { CLOCK_FILE } from '../push/frontend-root-check.ts';
import { rsyncDestination, type FrontendTarget } from '../push/frontend-target.ts';
import { sshCommand } from '../push/rsync-command.ts';
import { isThumbnailName } from '../store/store-layout.ts';
import { isProcessAlive } from '../util/process-alive.ts';
import { isPlainFileBelow, isRecent, walkLocalTree, type LocalTree } from './local-files.ts';

/**
 * An rsync temp file younger than this may belong to a transfer still running (rsync writes it on and
 * on, and gives up after push.timeoutSeconds without data): it is not listed, so not judged.
 */
export const RSYNC_TEMP_SETTLE_SECONDS = 3600;

/**
 * Pure: one of our thumbnails on a frontend, in any version: `<hash>_<preset>.<ext>` (isThumbnailName) or a
 * rework's `<hash>_<preset>.v<N>.<ext>` (thumbnailRelativePath). Without the second, a replaced version's
 * files (`.v2` once `.v3` is live) were never deleted from a frontend.
 */
export function isOurFrontendName(relativePath: string, country?: string): boolean {
  return isThumbnailName(relativePath.replace(/\.v[1-9][0-9]{0,5}(\.[a-z]+)$/, '$1'), country);
}

/**
 * Pure: `<dir>/.<name>.XXXXXX` where `<dir>/<name>` is one of our thumbnails: the hidden temp file rsync
 * writes before renaming it into place. A transfer killed hard (SIGKILL of the pusher's unit, the OOM
 * killer, a frontend's rsync daemon dying) leaves it behind for good: nothing else ever removes it.
 */
export function isRsyncTempName(relativePath: string, country?: string): boolean {
  const m = /^(.*\/)\.([^/]+)\.[A-Za-z0-9]{6}$/.exec(relativePath);
  return m !== null && isOurFrontendName(`${m[1]}${m[2]}`, country);
}

/** Temp folders of a run, named with its pid so that a later run can tell a dead run's leftovers. */
const TEMP_PREFIXES = ['lis-list-', 'lis-delete-'] as const;

/** The temp folders this process made (names): the only ones under its pid that are not a dead run's. */
const ownTempFolders = new Set<string>();

function makeTempFolder(prefix: (typeof TEMP_PREFIXES)[number]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}${process.pid}-`));
  ownTempFolders.add(path.basename(dir));
  return dir;
}

/**
 * Removes the temp folders of runs that are gone: a run killed mid-walk (SIGTERM from systemd, SIGKILL,
 * the OOM killer) cannot clean up, and its listing holds a country's whole file list. Returns how many.
 */
export function sweepDeadRunsTempFolders(): number {
  let swept = 0;
  for (const name of fs.readdirSync(os.tmpdir())) {
    const prefix = TEMP_PREFIXES.find((p) => name.startsWith(p));
    const pid = prefix ? /^(\d+)-/.exec(name.slice(prefix.length))?.[1] : undefined;
    // Under this process's pid but not made by it: a killed run's whose pid this one has now (in a container each
    // run is pid 1 there, as the killed one was), which "is it alive?" kept for ever.
    const alive = Number(pid) === process.pid ? ownTempFolders.has(name) : isProcessAlive(Number(pid));
    if (pid === undefined || alive) continue;
    fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
    swept++;
  }
  return swept;
}

/** Options every rsync to a frontend needs: time limits, and how to reach daemons and ssh hosts. */
function reachOptions(config: PushConfig, target: FrontendTarget): string[] {
  const args = [`--timeout=${config.timeoutSeconds}`];
  if (target.kind === 'daemon') {
    args.push(`--contimeout=${config.connectTimeoutSeconds}`);
    if (config.daemonPasswordFile) args.push(`--password-file=${config.daemonPasswordFile}`);
  }
  if (target.kind === 'ssh') args.push('-e', sshCommand(config));
  return args;
}

function runRsync(config: PushConfig, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    const child = spawn(config.rsyncPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', ...env } });
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', (e) => resolve({ code: null, stdout, stderr: e.message }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Pure: the file names in `rsync --list-only -r` output (directories and links left out). */
export function parseListOnly(output: string): string[] {
  return parseListOnlyEntries(output).map((e) => e.file);
}

/**
 * Pure: the files in `rsync --list-only -r` output with their modification times, printed in UTC (the listing's
 * rsync runs with TZ=UTC: in the host's zone, the hour repeated as summer time ends read back as the summer one, an
 * hour earlier, and a temp file a transfer was writing looked an hour old and was deleted).
 */
export function parseListOnlyEntries(output: string): Array<{ file: string; mtime: Date }> {
  const files: Array<{ file: string; mtime: Date }> = [];
  for (const line of output.split('\n')) {
    // -rw-r--r--         12,345 2026/11/22 01:00:00 0f/a30f..._small.jpg
    const m = /^-\S+\s+[\d,.]+\s+(\d+)\/(\d+)\/(\d+)\s+(\d+):(\d+):(\d+)\s+(.+)$/.exec(line);
    if (m) {
      const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number);
      files.push({ file: m[7], mtime: new Date(Date.UTC(y, mo - 1, d, h, mi, se)) });
    }
  }
  return files;
}

/** Pure: the symbolic links in `rsync --list-only -r` output (rsync lists a link, it does not follow it). */
export function parseListOnlyLinks(output: string): string[] {
  const links: string[] = [];
  for (const line of output.split('\n')) {
    // lrwxrwxrwx             30 2026/11/22 01:00:00 uk/0f   (with --links, ` -> /mnt/disk2/uk/0f` follows)
    const m = /^l\S+\s+[\d,.]+\s+\d+\/\d+\/\d+\s+\d+:\d+:\d+\s+(.+?)(?: -> .*)?$/.exec(line);
    if (m) links.push(m[1]);
  }
  return links;
}

/** A listed file fs_check may judge: anything but an rsync temp file that may still be written (its age on `now`, ms). */
function settled(file: string, mtime: Date, now: number): boolean {
  return !isRsyncTempName(file) || now - mtime.getTime() >= RSYNC_TEMP_SETTLE_SECONDS * 1000;
}

/**
 * The frontend's own time now, in ms (readFrontendClock), or this host's when `host` (a dry run, which writes
 * nothing to a frontend).
 */
export type ClockSource = 'frontend' | 'host';

/**
 * The frontend's clock now, in ms: CLOCK_FILE written at its root (a local frontend's by this process; a remote's
 * by rsync without --times, so the frontend's side stamps it, as it stamps the temp file of every transfer) and its
 * time read back (listed, for a remote one). A temp file's age is judged on this: on this host's clock, a frontend
 * an hour or more behind it had the temp file of a transfer still running deleted (the transfer then failed and was
 * retried), and one ahead of it kept a killed transfer's leftovers longer than the hour.
 */
export async function readFrontendClock(config: PushConfig, target: FrontendTarget): Promise<number> {
  if (target.kind === 'local') {
    const file = path.join(target.path, CLOCK_FILE);
    try {
      fs.writeFileSync(file, '');
      return fs.statSync(file).mtimeMs;
    } catch (error) {
      // A read-only mount, a full disk: said as a remote frontend's is, with the same code.
      throw clockError(target, `writing ${CLOCK_FILE}`, { stderr: (error as Error).message });
    }
  }
  const work = makeTempFolder('lis-list-');
  try {
    const local = path.join(work, CLOCK_FILE);
    fs.writeFileSync(local, '');
    // --ignore-times: the file is sent (and so stamped anew) even when the last run's is there, unchanged.
    const sent = await runRsync(config, ['--ignore-times', ...reachOptions(config, target), local, rsyncDestination(target)]);
    if (sent.code !== 0) throw clockError(target, `writing ${CLOCK_FILE}`, sent);
    const listed = await runRsync(config, ['--list-only', ...reachOptions(config, target), `${rsyncDestination(target)}${CLOCK_FILE}`], { TZ: 'UTC' });
    const entry = listed.code === 0 ? parseListOnlyEntries(listed.stdout).find((e) => e.file === CLOCK_FILE) : undefined;
    if (!entry) throw clockError(target, `listing ${CLOCK_FILE}`, listed);
    return entry.mtime.getTime();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function clockError(target: FrontendTarget, step: string, result: { code?: number | null; stderr: string }): LisError {
  const why = result.stderr.trim().split('\n').slice(-2).join(' ') || 'no such file listed';
  return new LisError(
    'ERR_FRONTEND_CLOCK',
    `cannot read the clock of ${rsyncDestination(target)} (${step}: ${result.code === undefined ? '' : `rsync exit ${result.code}: `}${why}): its rsync temp files are judged on its clock`,
  );
}

/** A frontend's files for one country, split by first-level folder (`00`..`ff`) in temp files, so memory stays small. */
export interface FrontendListing {
  /**
   * Files below `<country>/<prefix>/`, relative to the frontend's root, and the symbolic links not
   * followed there (the country or prefix folder itself included): what is behind them was not seen.
   */
  treeIn(prefix: string): LocalTree;
  close(): void;
}

/**
 * Lists every file of a country on a frontend. Local frontends are walked a
 * folder at a time when asked; remote ones are listed by one rsync
 * (`--list-only -r`), its output spread over one temp file per first-level
 * folder as it streams, so ten million files need no more memory than a few.
 * rsync temp files younger than RSYNC_TEMP_SETTLE_SECONDS are left out, their
 * age judged on the frontend's clock (readFrontendClock) unless `clock` is
 * `host` (a dry run), read once before the listing: a temp file begun since is
 * younger than it, never older.
 */
export async function listFrontendTree(config: PushConfig, target: FrontendTarget, country: string, clock: ClockSource = 'frontend'): Promise<FrontendListing> {
  const now = clock === 'frontend' ? await readFrontendClock(config, target) : Date.now();
  if (target.kind === 'local') {
    const root = target.path;
    return {
      treeIn: (prefix) => {
        const tree = walkLocalTree(root, `${country}/${prefix}`);
        return { files: tree.files.filter((f) => !isRsyncTempName(f) || !isRecent(path.join(root, f), RSYNC_TEMP_SETTLE_SECONDS, now)), links: tree.links };
      },
      close: () => {},
    };
  }
  const work = makeTempFolder('lis-list-');
  const buckets = new Map<string, fs.WriteStream>();
  // Links are few (none in our own layout): kept in memory, by first-level folder ('' for the country itself).
  const links = new Map<string, string[]>();
  const noteLinks = (output: string) => {
    for (const link of parseListOnlyLinks(output)) {
      const key = link === country ? '' : link.startsWith(`${country}/`) ? link.slice(country.length + 1, country.length + 3) : null;
      if (key !== null) links.set(key, [...(links.get(key) ?? []), link]);
    }
  };
  const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    let stderr = '';
    let rest = '';
    // The country folder without a trailing slash: were it a link, rsync lists the link and does not follow it.
    const child = spawn(config.rsyncPath, ['--list-only', '-r', ...reachOptions(config, target), `${rsyncDestination(target)}${country}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its times in UTC, which parseListOnlyEntries reads back (an ssh target's remote rsync sends times, not text).
      env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' },
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      noteLinks(lines.join('\n'));
      for (const { file, mtime } of parseListOnlyEntries(lines.join('\n'))) {
        if (!settled(file, mtime, now)) continue;
        const prefix = file.slice(country.length + 1, country.length + 3);
        if (!file.startsWith(`${country}/`) || !/^[0-9a-f]{2}$/.test(prefix) || file[country.length + 3] !== '/') continue;
        let out = buckets.get(prefix);
        if (!out) buckets.set(prefix, (out = fs.createWriteStream(path.join(work, prefix))));
        out.write(`${file}\n`);
      }
    });
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', (e) => resolve({ code: null, stderr: e.message }));
    child.on('close', (code) => {
      noteLinks(rest);
      for (const { file, mtime } of parseListOnlyEntries(rest))
        if (file.startsWith(`${country}/`) && settled(file, mtime, now)) buckets.get(file.slice(country.length + 1, country.length + 3))?.write(`${file}\n`);
      resolve({ code, stderr });
    });
  });
  await Promise.all([...buckets.values()].map((out) => new Promise((resolve) => out.end(resolve))));
  const close = () => fs.rmSync(work, { recursive: true, force: true });
  // 23 with "No such file or directory": the country has no folder there yet.
  if (result.code !== 0 && !(result.code === 23 && /No such file or directory/.test(result.stderr))) {
    close();
    throw new LisError(
      'ERR_FRONTEND_LIST',
      `cannot list ${country}/ on ${rsyncDestination(target)}: rsync exit ${result.code}: ${result.stderr.trim().split('\n').slice(-2).join(' ')}`,
    );
  }
  return {
    treeIn: (prefix) => {
      const file = path.join(work, prefix);
      const linked = [...(links.get('') ?? []), ...(links.get(prefix) ?? [])];
      return { files: fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [], links: linked };
    },
    close,
  };
}

/** Pure: rsync filter rules that delete exactly `files` (and nothing else) when syncing an empty tree with --delete. */
export function deletionRules(files: string[]): string {
  const dirs = new Set<string>();
  for (const file of files) {
    const parts = file.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(`/${parts.slice(0, i).join('/')}/`);
  }
  return [...[...dirs].sort().map((d) => `+ ${d}`), ...files.map((f) => `+ /${f}`), '- *'].join('\n') + '\n';
}

/**
 * Deletes files (relative to the frontend's root) from a frontend. Remote
 * frontends: one rsync of an empty copy of the files' folders with --delete
 * and filter rules naming exactly those files, so every other file (excluded)
 * is protected; the same transport and options as the pusher's.
 */
export async function deleteFrontendFiles(config: PushConfig, target: FrontendTarget, files: string[]): Promise<void> {
  if (files.length === 0) return;
  if (target.kind === 'local') {
    // Checked again right before: a folder swapped for a link since the listing must not lead us out.
    for (const file of files) if (isPlainFileBelow(target.path, file)) fs.rmSync(path.join(target.path, file), { force: true });
    return;
  }
  const work = makeTempFolder('lis-delete-');
  try {
    const empty = path.join(work, 'empty');
    for (const file of files) fs.mkdirSync(path.join(empty, path.dirname(file)), { recursive: true });
    const rules = path.join(work, 'rules');
    fs.writeFileSync(rules, deletionRules(files));
    const result = await runRsync(config, [
      '-r',
      '--delete',
      '--omit-dir-times',
      `--filter=merge ${rules}`,
      ...reachOptions(config, target),
      `${empty}/`,
      rsyncDestination(target),
    ]);
    if (result.code !== 0)
      throw new LisError(
        'ERR_FRONTEND_DELETE',
        `cannot delete ${files.length} files on ${rsyncDestination(target)}: rsync exit ${result.code}: ${result.stderr.trim().split('\n').slice(-2).join(' ')}`,
      );
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
