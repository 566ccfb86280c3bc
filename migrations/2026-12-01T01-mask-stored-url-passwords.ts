import { sql, type Kysely } from 'kysely';

/**
 * Masks the URL passwords already stored in recorded reasons. Since 2026-12-01 every reason is masked as it
 * is written (src/util/mask-url-password.ts: a feed's `http://user:secret@host/x.jpg` is recorded as
 * `http://user:***@host/x.jpg`), but reasons written before kept the password, and `lis image`, the status
 * page, alerts and anyone reading the tables showed it. The same rule as maskUrlPasswords, in SQL: the
 * userinfo's part after the user name's first `:`, up to the authority's `@`. Without the function's word
 * boundary before the scheme, which changes only where the kept prefix starts, never what is masked (so it
 * masks a little more: a scheme glued to a word or digit before it). Only rows holding such a URL are written.
 */
const COLUMNS: Array<[table: string, column: string]> = [
  ['live_images', 'last_error'],
  ['datasources', 'disabled_reason'],
  ['manager_events', 'detail'],
  ['manager_events', 'subject'],
  ['workers', 'paused_reason'],
  ['frontends', 'down_reason'],
  ['frontend_pushes', 'last_error'],
  ['alerts_sent', 'subject'],
];

const URL_WITH_PASSWORD = '([a-z][a-z0-9+.-]*://[^[:space:]:/?#@]*):[^[:space:]/?#@]*@';
/** The kept scheme, host part and user name (the pattern's group 1), the password as `***`. */
const MASKED = '\\1:***@';

export async function up(db: Kysely<any>): Promise<void> {
  for (const [table, column] of COLUMNS) {
    const t = sql.table(table);
    const c = sql.ref(column);
    // A password already masked (`:***@`) matches too and is rewritten to itself: the WHERE keeps those rows unwritten.
    await sql`
      UPDATE ${t} SET ${c} = regexp_replace(${c}, ${URL_WITH_PASSWORD}, ${MASKED}, 'gi')
       WHERE ${c} LIKE '%://%@%' AND ${c} <> regexp_replace(${c}, ${URL_WITH_PASSWORD}, ${MASKED}, 'gi')`.execute(db);
  }
}

/** The passwords are gone: nothing to undo. */
export async function down(): Promise<void> {}
