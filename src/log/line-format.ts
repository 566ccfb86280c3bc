import { maskUrlPasswords } from '../util/mask-url-password.ts';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const pad = (n: number) => String(n).padStart(2, '0');

/** `Jun 19 09:11:26`, in local time, as syslog and the old system wrote it. */
export function syslogTime(date: Date): string {
  return `${MONTHS[date.getMonth()]} ${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export interface LineFields {
  time: Date;
  level: string;
  /** `Download::get_chunk_of_work`: where the line comes from. */
  scope?: string;
  pid: number;
  country?: string;
  message: string;
  /** A stack trace (debug, or a bug's at error: stackOf): on lines of its own below, each indented so that none reads as a log line. */
  detail?: string;
}

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * One line whatever the text holds: control characters (C0, DEL, C1) and the
 * Unicode line and paragraph separators are written as `\n`, `\x1b`,
 * `\u2028`. A URL is data from a feed (or from a plain SQL insert, which no
 * check of ours sees): with a newline in it, it could forge a log line.
 */
export function escapeControl(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    return NAMED[c] ?? (code > 0xff ? `\\u${code.toString(16)}` : `\\x${code.toString(16).padStart(2, '0')}`);
  });
}

/**
 * `Jun 19 09:11:26 INFO Download::get_chunk_of_work[6881]:UK Doing chunk of work for UK (size 500)`. A URL's
 * password (a feed's `http://user:secret@host/...`) is masked here, once for every line (maskUrlPasswords).
 */
export function formatLine({ time, level, scope, pid, country, message, detail }: LineFields): string {
  const where = `${escapeControl(scope ?? 'ImageSys')}[${pid}]${country ? `:${escapeControl(country.toUpperCase())}` : ''}`;
  const more = detail
    ? detail
        .split(/\r?\n/)
        .map((line) => `\n    ${escapeControl(maskUrlPasswords(line.trim()))}`)
        .join('')
    : '';
  return `${syslogTime(time)} ${level.toUpperCase()} ${where} ${escapeControl(maskUrlPasswords(message))}${more}`;
}
