import path from 'node:path';
import { LisError } from '../errors.ts';

/**
 * Where a frontend's thumbnail root is, as rsync reaches it. Below the root
 * the layout is the store's: `<country>/<aa>/<bb>/<hash>_<preset>.jpg`.
 */
export type FrontendTarget =
  | { kind: 'local'; path: string }
  | { kind: 'daemon'; user: string | null; host: string; port: number | null; module: string; path: string }
  | { kind: 'ssh'; user: string | null; host: string; path: string };

export class FrontendTargetError extends LisError {
  constructor(target: string, why: string) {
    super(
      'ERR_FRONTEND_TARGET',
      `frontend target ${JSON.stringify(target)}: ${why}; expected a local path (/srv/thumbs), rsync://host[:port]/module[/path] or [user@]host:/path`,
    );
    this.name = 'FrontendTargetError';
  }
}

const USER = '[A-Za-z0-9_][A-Za-z0-9_.-]*';
const HOST = '[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?';
const DAEMON = new RegExp(`^rsync://(?:(${USER})@)?(${HOST})(?::(\\d{1,5}))?/([A-Za-z0-9_.-]+)(/.*)?$`);
const SSH = new RegExp(`^(?:(${USER})@)?(${HOST}):(/.*)$`);
/** rsync parses a remote path again on the far side (and a remote shell splits ssh ones): keep them plain. */
const SAFE_PATH = /^[A-Za-z0-9_./+@%=,~-]*$/;
/**
 * A local path reaches rsync as one argument and is read by nothing else, so any printable character goes
 * (a space: a checkout under "/home/me/my sites" puts the demo's frontends there); control characters do not.
 */
const LOCAL_PATH = /^\P{Cc}*$/u;

/**
 * Pure: parses and validates a target. A local path must be absolute (the
 * CLI resolves relative ones before storing); `..` is refused everywhere so a
 * target cannot climb out of the root it names.
 */
export function parseFrontendTarget(target: string): FrontendTarget {
  if (!target || target !== target.trim()) throw new FrontendTargetError(target, 'empty, or blank at either end');
  if (target.startsWith('rsync://')) {
    const m = DAEMON.exec(target);
    if (!m) throw new FrontendTargetError(target, 'not a valid rsync daemon address');
    const port = m[3] === undefined ? null : Number(m[3]);
    if (port !== null && (port < 1 || port > 65535)) throw new FrontendTargetError(target, `port ${port} is out of range`);
    return { kind: 'daemon', user: m[1] ?? null, host: m[2], port, module: m[4], path: cleanPath(target, (m[5] ?? '').replace(/^\/+/, '')) };
  }
  if (target.startsWith('/')) return { kind: 'local', path: cleanPath(target, target, LOCAL_PATH) };
  const ssh = SSH.exec(target);
  // `http://host/x` would read as host `http`, path `//host/x`: a URL, not what was meant.
  if (ssh && !ssh[3].startsWith('//')) return { kind: 'ssh', user: ssh[1] ?? null, host: ssh[2], path: cleanPath(target, ssh[3]) };
  throw new FrontendTargetError(target, 'neither an absolute local path, an rsync:// address nor host:/path');
}

function cleanPath(target: string, p: string, allowed = SAFE_PATH): string {
  if (!allowed.test(p))
    throw new FrontendTargetError(
      target,
      allowed === LOCAL_PATH ? 'the path may not hold control characters' : 'a remote path may hold only letters, digits and _ . / + @ % = , ~ -',
    );
  if (p.split('/').includes('..')) throw new FrontendTargetError(target, 'the path may not contain ..');
  const trimmed = p.replace(/\/+$/, '');
  return trimmed === '' && p.startsWith('/') ? '/' : trimmed;
}

/**
 * What `lis frontend add` stores: relative local paths made absolute against
 * the working folder. `..` is refused before that: resolving would quietly
 * turn `../../etc` into `/etc`.
 */
export function normaliseTarget(target: string, cwd = process.cwd()): string {
  const t = target.trim();
  if (t.split(/[/\\]/).includes('..')) throw new FrontendTargetError(target, 'the path may not contain ..');
  const local = t.startsWith('./') || t.startsWith('../') || t === '.' || t === '..';
  const absolute = local ? path.resolve(cwd, t) : t;
  return formatTarget(parseFrontendTarget(absolute));
}

/** The canonical spelling of a target. */
export function formatTarget(t: FrontendTarget): string {
  switch (t.kind) {
    case 'local':
      return t.path;
    case 'daemon':
      return `rsync://${t.user ? `${t.user}@` : ''}${t.host}${t.port ? `:${t.port}` : ''}/${t.module}${t.path ? `/${t.path}` : ''}`;
    case 'ssh':
      return `${t.user ? `${t.user}@` : ''}${t.host}:${t.path}`;
  }
}

/** The destination argument for rsync, with the trailing slash that means "into this folder". */
export function rsyncDestination(t: FrontendTarget): string {
  const slash = (p: string) => (p.endsWith('/') ? p : `${p}/`);
  switch (t.kind) {
    case 'local':
      return slash(t.path);
    case 'daemon':
      return slash(formatTarget(t));
    case 'ssh':
      return slash(formatTarget(t));
  }
}
