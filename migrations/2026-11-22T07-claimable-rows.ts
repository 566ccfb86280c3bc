import { sql, type Kysely } from 'kysely';

/**
 * Makes a stage move a HOT update of live_images.
 *
 * Before, the claim index of live_images held `stage`, so every stage move
 * wrote a new entry into each of the table's indexes, the (country,
 * image_hash) one at a random place: two thirds of a drain's database time.
 * Now the rows a worker may claim (waiting, unlocked, not live) are listed in
 * a narrow table of their own, a partial index kept by hand: a claim deletes
 * the entries it takes, and whatever makes a row claimable again adds one.
 * live_images keeps every queue column and stays the truth; an entry is only
 * a pointer, checked again when claimed, so a stale one is harmless (the
 * claim drops it) and a missing one is added back by the manager.
 *
 * Who adds entries: an INSERT trigger (the ETL), a row trigger on updates of
 * unlocked rows (retry, refresh, unpark, fs-check, an operator's UPDATE), and,
 * for rows a worker held, the statement that unlocks them (finish, fail,
 * release: see src/queue/claimable-rows.ts), which is cheaper than a trigger on
 * the hot path. The manager adds back any a hand-run UPDATE of locked rows missed.
 *
 * Also: fillfactor 30 leaves each page room for the versions a claim and a
 * finish write before the older ones can be pruned, so both stay HOT under
 * load; and the CHECKs no longer run a regular expression, since PostgreSQL
 * checks every CHECK on every UPDATE.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE claimable_rows (
      id              bigint NOT NULL,
      country         text NOT NULL,
      stage           text NOT NULL,
      store_host      text NOT NULL,
      next_attempt_at timestamptz NOT NULL
    );
    CREATE INDEX claimable_rows_claim ON claimable_rows (country, stage, store_host, id);
    INSERT INTO claimable_rows (id, country, stage, store_host, next_attempt_at)
      SELECT id, country, stage, store_host, next_attempt_at FROM live_images
       WHERE state = 'waiting' AND locked_by IS NULL AND stage <> 'live';

    -- The backlog, for the queue figures and the manager. No stage in it: a stage move keeps
    -- state 'waiting', so it stays HOT.
    DROP INDEX live_images_claim;
    CREATE INDEX live_images_waiting ON live_images (country, id) WHERE state = 'waiting';

    -- Applies to pages written from now on; VACUUM FULL repacks the old ones.
    ALTER TABLE live_images SET (fillfactor = 30);

    ALTER TABLE live_images
      DROP CONSTRAINT live_images_country_check,
      ADD CONSTRAINT live_images_country_check
        CHECK (length(country) IN (2, 3) AND rtrim(country, 'abcdefghijklmnopqrstuvwxyz') = ''),
      DROP CONSTRAINT live_images_image_url_check,
      ADD CONSTRAINT live_images_image_url_check
        CHECK (starts_with(image_url, 'http://') OR starts_with(image_url, 'https://'));

    -- Fires before live_images_notify_insert and live_images_park_disabled (AFTER triggers go
    -- by name), so the park trigger's UPDATE finds the entries and its row trigger drops them.
    CREATE FUNCTION lis_list_inserted_claimable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO claimable_rows (id, country, stage, store_host, next_attempt_at)
        SELECT id, country, stage, store_host, next_attempt_at FROM new_rows
         WHERE state = 'waiting' AND locked_by IS NULL AND stage <> 'live';
      RETURN NULL;
    END $$;
    CREATE TRIGGER live_images_claimable_insert AFTER INSERT ON live_images
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lis_list_inserted_claimable();

    -- Unlocked rows only: a claim (NEW locked) drops its entries itself, and a statement that
    -- unlocks rows (OLD locked) adds theirs itself, so the hot path never runs this.
    CREATE FUNCTION lis_relist_claimable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.state = 'waiting' AND OLD.stage <> 'live' THEN
        DELETE FROM claimable_rows
         WHERE country = OLD.country AND stage = OLD.stage AND store_host = OLD.store_host AND id = OLD.id;
      END IF;
      IF NEW.state = 'waiting' AND NEW.stage <> 'live' THEN
        INSERT INTO claimable_rows (id, country, stage, store_host, next_attempt_at)
          VALUES (NEW.id, NEW.country, NEW.stage, NEW.store_host, NEW.next_attempt_at);
        PERFORM pg_notify('lis_work', NEW.country || ':' || NEW.stage);
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER live_images_claimable_update AFTER UPDATE ON live_images FOR EACH ROW
      WHEN (OLD.locked_by IS NULL AND NEW.locked_by IS NULL
            AND ((OLD.state = 'waiting' AND OLD.stage <> 'live') OR (NEW.state = 'waiting' AND NEW.stage <> 'live'))
            AND (OLD.state, OLD.stage, OLD.country, OLD.store_host, OLD.next_attempt_at)
                IS DISTINCT FROM (NEW.state, NEW.stage, NEW.country, NEW.store_host, NEW.next_attempt_at))
      EXECUTE FUNCTION lis_relist_claimable();

    -- Its notifications now come from the code above; the statement-level trigger copied every
    -- updated row, claims included, into a transition table.
    DROP TRIGGER live_images_notify_update ON live_images;
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TRIGGER live_images_notify_update AFTER UPDATE ON live_images
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lis_notify_work();
    DROP TRIGGER live_images_claimable_update ON live_images;
    DROP TRIGGER live_images_claimable_insert ON live_images;
    DROP FUNCTION lis_relist_claimable(), lis_list_inserted_claimable();
    ALTER TABLE live_images
      DROP CONSTRAINT live_images_country_check,
      ADD CONSTRAINT live_images_country_check CHECK (country ~ '^[a-z]{2,3}$'),
      DROP CONSTRAINT live_images_image_url_check,
      ADD CONSTRAINT live_images_image_url_check CHECK (image_url ~ '^https?://');
    ALTER TABLE live_images SET (fillfactor = 50);
    DROP INDEX live_images_waiting;
    CREATE INDEX live_images_claim ON live_images (country, stage, store_host, id) WHERE state = 'waiting';
    DROP TABLE claimable_rows;
  `.execute(db);
}
