import { parseS3Url, S3_SCHEME } from '../net/s3-url.ts';
import { codePointLength } from '../util/code-points.ts';

export type ParsedLine =
  | { kind: 'url'; datasourceId: number; url: string }
  | { kind: 'skip' }
  /** `noDatasource`: the line is fine but nothing says its datasource (a usage mistake when every line is so). */
  | { kind: 'bad'; reason: string; noDatasource?: true };

// eslint-disable-next-line no-control-regex -- finding control characters is this pattern's purpose
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * The scheme test of live_images' rule on image_url (lis_image_url_ok, in the
 * trigger that replaced its CHECK: the scheme before `://`, any case; the table
 * also takes file:// for origin folders): case-insensitive, as schemes are.
 * Kept in step so that a line the parser takes is never refused by the table.
 */
// s3://bucket/key: fetched through the S3 API with the bucket's configured credentials (imaged.s3).
export const URL_SCHEME = /^(https?|s3):\/\//i;

/** A comment: a line whose first non-blank character (blanks: spaces and tabs) is `#`, indented ones too. */
const COMMENT = /^[ \t]*#/;

/**
 * One line of ETL input: `URL`, or `DATASOURCE<TAB>URL`. Blank lines and
 * `#` comments are skipped. The URL is kept exactly as given (its hash is
 * its identity), so it is checked, never rewritten.
 */
export function parseUrlLine(line: string, defaultDatasource: number | undefined, maxUrlLength: number): ParsedLine {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (text.trim() === '' || COMMENT.test(text)) return { kind: 'skip' };
  let datasourceId = defaultDatasource;
  let url = text;
  const tab = text.indexOf('\t');
  if (tab >= 0) {
    const field = text.slice(0, tab);
    // A first field that is a URL: the tab is inside the URL (a feed's stray tab), not a DATASOURCE<TAB> column.
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(field)) return { kind: 'bad', reason: 'URL contains white space (a tab)' };
    if (!/^\d{1,9}$/.test(field)) return { kind: 'bad', reason: `datasource ${JSON.stringify(field)} is not a whole number` };
    datasourceId = Number(field);
    url = text.slice(tab + 1);
  }
  if (datasourceId === undefined) return { kind: 'bad', reason: 'no datasource: give --datasource or a DATASOURCE<TAB>URL line', noDatasource: true };
  // Input is read as UTF-8, and bytes that are not UTF-8 (a Latin-1 export's é) arrive as U+FFFD: stored, the row would
  // be another URL than the file's, fetched as %EF%BF%BD. Said as a bad line instead; a URL never means U+FFFD itself.
  if (url.includes('\uFFFD')) return { kind: 'bad', reason: 'not UTF-8: the line has bytes that are not UTF-8 (save the file as UTF-8)' };
  const verdict = checkUrl(url, maxUrlLength);
  return verdict.ok ? { kind: 'url', datasourceId, url } : { kind: 'bad', reason: verdict.reason };
}

/**
 * The URL rules alone, for one URL as given (no line syntax: no `#` comments,
 * no DATASOURCE<TAB> column, no trailing CR stripped). The Interface checks
 * listing code's URLs with this: the hash it hands back is of the very bytes
 * it was given, so nothing may be trimmed off them first.
 */
export function checkUrl(url: string, maxUrlLength: number): { ok: true } | { ok: false; reason: string } {
  const bad = (reason: string) => ({ ok: false as const, reason });
  if (url === '') return bad('empty URL');
  const length = codePointLength(url);
  if (length > maxUrlLength) return bad(`URL longer than ${maxUrlLength} characters (${length})`);
  if (CONTROL.test(url)) return bad('URL contains control characters');
  if (/\s/.test(url)) return bad('URL contains white space');
  // A lone surrogate (JavaScript strings may hold one; UTF-8 cannot) is sent to PostgreSQL as U+FFFD: the row would
  // hold another URL than the one given, and imagesForSiBuild, matching rows by URL, would call it "download" forever.
  if (/\p{Cs}/u.test(url)) return bad('URL is not well-formed Unicode (a lone surrogate)');
  if (!URL_SCHEME.test(url)) return bad(`not an http or https URL (nor s3://bucket/key): ${JSON.stringify(url.slice(0, 80))}`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return bad(`not a valid URL: ${JSON.stringify(url.slice(0, 80))}`);
  }
  // `http:///a.jpg` parses as http://a.jpg/ (WHATWG URL skips the empty authority): another URL than the one given.
  if (!parsed.hostname || url.charAt(url.indexOf('//') + 2) === '/') return bad('URL has no host');
  // Judged as the downloader will: a URL it could never ask S3 for is refused here, not failed later as bad_url.
  if (S3_SCHEME.test(url) && !parseS3Url(url))
    return bad(
      `not s3://bucket/key: a bucket named in lower case (2-63 letters, digits, dots, hyphens), then a key, its %-escapes whole: ${JSON.stringify(url.slice(0, 80))}`,
    );
  return { ok: true };
}
