import { sql, type Kysely } from 'kysely';

/**
 * The rules on live_images' country and image_url are checked only when a
 * statement writes one of them, no longer on every update (issue 17).
 *
 * PostgreSQL checks every CHECK of a table on every UPDATE, also one that sets
 * none of its columns: each claim and finish evaluated both rules on every row,
 * for values it never wrote. A trigger `OF country, image_url` is queued only
 * for an INSERT or an UPDATE that names one of them, and its WHEN (the rules as
 * SQL functions, inlined) queues nothing for a row that keeps them. A row that
 * breaks one is refused with the CHECK's own error: SQLSTATE 23514, the same
 * message and constraint name, and the statement is undone, so callers (the
 * intake splits a batch on class 23 and names the row) see no difference.
 *
 * AFTER, not BEFORE: with any BEFORE ROW UPDATE trigger, PostgreSQL locks each
 * row an UPDATE changes for it before looking at the trigger's columns, and a
 * drain wrote two more WAL records a row (10.1 against 8.1, 721 against 614
 * bytes). An AFTER row trigger costs an UPDATE of other columns a read of the
 * old row, and no WAL. It runs after the row's index entries are made, so a
 * row that breaks both a unique key and a rule is refused for the key (23505,
 * also class 23) where the CHECK named the rule.
 *
 * Measured (bench:queue, 1M rows, two cores shared with other work, alternated
 * with the CHECKs): the server's CPU a row 24.6 and 25.9 µs against 26.2 and
 * 27.5 (the raw keyset 13.1-14.8), WAL unchanged; inserts cost the same.
 *
 * Rows already in the table were checked by the CHECKs. Unlike a CHECK, a
 * trigger does not run under session_replication_role = replica (a logical
 * replica, pg_restore --disable-triggers): those copy rows already checked.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE FUNCTION lis_country_ok(country text) RETURNS boolean
      LANGUAGE sql IMMUTABLE PARALLEL SAFE
      AS $$ SELECT length(country) IN (2, 3) AND rtrim(country, 'abcdefghijklmnopqrstuvwxyz') = '' $$;
    CREATE FUNCTION lis_image_url_ok(url text) RETURNS boolean
      LANGUAGE sql IMMUTABLE PARALLEL SAFE
      AS $$ SELECT lower(split_part(url, '://', 1)) IN ('http', 'https', 's3', 'file') AND strpos(url, '://') > 0 $$;

    -- Called only for a row that breaks a rule (the trigger's WHEN): names the first rule it breaks. Raising
    -- in an AFTER trigger undoes the whole statement, as a CHECK does.
    CREATE FUNCTION lis_refuse_bad_image_row() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      broken text := CASE WHEN lis_country_ok(NEW.country) IS FALSE THEN 'live_images_country_check' ELSE 'live_images_image_url_check' END;
    BEGIN
      RAISE EXCEPTION 'new row for relation "%" violates check constraint "%"', TG_TABLE_NAME, broken
        USING ERRCODE = 'check_violation', SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, CONSTRAINT = broken,
              DETAIL = format('Failing row contains %s.', NEW);
    END $$;

    CREATE TRIGGER live_images_country_url_check AFTER INSERT OR UPDATE OF country, image_url ON live_images
      FOR EACH ROW WHEN (lis_country_ok(NEW.country) IS FALSE OR lis_image_url_ok(NEW.image_url) IS FALSE)
      EXECUTE FUNCTION lis_refuse_bad_image_row();

    ALTER TABLE live_images DROP CONSTRAINT live_images_country_check, DROP CONSTRAINT live_images_image_url_check;
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE live_images
      ADD CONSTRAINT live_images_country_check
        CHECK (length(country) IN (2, 3) AND rtrim(country, 'abcdefghijklmnopqrstuvwxyz') = '') NOT VALID,
      ADD CONSTRAINT live_images_image_url_check
        CHECK (lower(split_part(image_url, '://', 1)) IN ('http', 'https', 's3', 'file') AND strpos(image_url, '://') > 0) NOT VALID;
    ALTER TABLE live_images VALIDATE CONSTRAINT live_images_country_check;
    ALTER TABLE live_images VALIDATE CONSTRAINT live_images_image_url_check;
    DROP TRIGGER live_images_country_url_check ON live_images;
    DROP FUNCTION lis_refuse_bad_image_row(), lis_image_url_ok(text), lis_country_ok(text);
  `.execute(db);
}
