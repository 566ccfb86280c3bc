import { sql, type Kysely } from 'kysely';

/**
 * One door for the queue (issue 14).
 *
 * - `live_data`: what the frontends serve and the Interface answers with.
 *   Set from `image_data` when a row reaches `live`, and kept while the row
 *   is reworked (refresh, re-thumbnail, re-push), so a live image stays live;
 *   `image_data` is the version being worked on.
 * - `claimable_rows.priority`: 0 for a row never live (new), 1 for a rework;
 *   the claim takes priority 0 first, so a rework backlog never delays a new
 *   image by more than one chunk.
 * - The row trigger that kept claimable_rows for hand-run UPDATEs is gone:
 *   every transition is an operation in src/queue that keeps the list in the
 *   same statement. Its lock order would deadlock against claims (it held
 *   live_images rows, then waited for entries a claim held).
 * - Parking a row of a disabled datasource on insert drops the entry the
 *   insert trigger just listed (the row trigger used to).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE live_images ADD COLUMN live_data jsonb;
    UPDATE live_images SET live_data = image_data WHERE stage = 'live' AND state = 'done' AND image_data IS NOT NULL;

    DROP TRIGGER live_images_claimable_update ON live_images;
    DROP FUNCTION lis_relist_claimable();

    ALTER TABLE claimable_rows ADD COLUMN priority smallint NOT NULL DEFAULT 0;
    DROP INDEX claimable_rows_claim;
    CREATE INDEX claimable_rows_claim ON claimable_rows (country, stage, store_host, priority, id);

    CREATE OR REPLACE FUNCTION lis_park_if_datasource_disabled() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      WITH parked AS (
        UPDATE live_images li SET state = 'parked'
          FROM new_rows n JOIN datasources d ON d.country = n.country AND d.datasource_id = n.datasource_id AND NOT d.enabled
         WHERE li.id = n.id AND li.state = 'waiting'
        RETURNING li.id, li.country, li.stage, li.store_host)
      DELETE FROM claimable_rows c USING parked p
       WHERE c.country = p.country AND c.stage = p.stage AND c.store_host = p.store_host AND c.id = p.id;
      RETURN NULL;
    END $$;
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION lis_park_if_datasource_disabled() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE live_images li SET state = 'parked'
        FROM new_rows n JOIN datasources d ON d.country = n.country AND d.datasource_id = n.datasource_id AND NOT d.enabled
       WHERE li.id = n.id AND li.state = 'waiting';
      RETURN NULL;
    END $$;
    DROP INDEX claimable_rows_claim;
    ALTER TABLE claimable_rows DROP COLUMN priority;
    CREATE INDEX claimable_rows_claim ON claimable_rows (country, stage, store_host, id);
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
    ALTER TABLE live_images DROP COLUMN live_data;
  `.execute(db);
}
