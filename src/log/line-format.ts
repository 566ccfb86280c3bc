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
}

/** `Jun 19 09:11:26 INFO Download::get_chunk_of_work[6881]:UK Doing chunk of work for UK (size 500)` */
export function formatLine({ time, level, scope, pid, country, message }: LineFields): string {
  const where = `${scope ?? 'ImageSys'}[${pid}]${country ? `:${country.toUpperCase()}` : ''}`;
  return `${syslogTime(time)} ${level.toUpperCase()} ${where} ${message}`;
}
