import { sql, type Kysely } from 'kysely';

/**
 * What the manager and the reports need: per-minute counts per worker (rows
 * done and failed in the last hour, throughput), what each worker holds, a
 * record of what the manager healed, how often a row failed the same way in
 * a row, and parking of rows whose datasource is disabled as they come in.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE workers ADD COLUMN holding integer NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN stage text;

    CREATE TABLE worker_minutes (
      worker_id text NOT NULL,
      minute    timestamptz NOT NULL,
      component text NOT NULL,
      country   text,
      done      integer NOT NULL DEFAULT 0,
      failed    integer NOT NULL DEFAULT 0,
      PRIMARY KEY (worker_id, minute)
    );
    CREATE INDEX worker_minutes_minute ON worker_minutes (minute);

    -- Outcomes per datasource per minute (error_class '' = done): failure rates and top reasons.
    CREATE TABLE datasource_minutes (
      country       text NOT NULL,
      datasource_id integer NOT NULL,
      minute        timestamptz NOT NULL,
      stage         text NOT NULL,
      error_class   text NOT NULL,
      n             integer NOT NULL,
      PRIMARY KEY (country, datasource_id, minute, stage, error_class)
    );
    CREATE INDEX datasource_minutes_minute ON datasource_minutes (minute);

    -- The queue's depth sampled every minute by the manager: the status page's chart over time.
    CREATE TABLE queue_samples (
      at      timestamptz NOT NULL,
      country text NOT NULL,
      stage   text NOT NULL,
      due     integer NOT NULL,
      later   integer NOT NULL,
      held    integer NOT NULL,
      PRIMARY KEY (at, country, stage)
    );

    CREATE TABLE manager_events (
      id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      at        timestamptz NOT NULL DEFAULT now(),
      check_name text NOT NULL,
      country   text,
      subject   text,
      rows      integer NOT NULL DEFAULT 0,
      detail    text NOT NULL
    );
    CREATE INDEX manager_events_at ON manager_events (at);

    ALTER TABLE live_images ADD COLUMN same_error_count integer NOT NULL DEFAULT 0;

    -- A row queued for a disabled datasource is parked at once, however it is inserted. One join
    -- per statement (not a lookup per row): the ETL inserts tens of thousands of rows a second.
    CREATE FUNCTION lis_park_if_datasource_disabled() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE live_images li SET state = 'parked'
        FROM new_rows n JOIN datasources d ON d.country = n.country AND d.datasource_id = n.datasource_id AND NOT d.enabled
       WHERE li.id = n.id AND li.state = 'waiting';
      RETURN NULL;
    END $$;
    CREATE TRIGGER live_images_park_disabled AFTER INSERT ON live_images
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lis_park_if_datasource_disabled();
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    DROP TRIGGER live_images_park_disabled ON live_images;
    DROP FUNCTION lis_park_if_datasource_disabled();
    ALTER TABLE live_images DROP COLUMN same_error_count;
    DROP TABLE manager_events, queue_samples, datasource_minutes, worker_minutes;
    ALTER TABLE workers DROP COLUMN holding, DROP COLUMN stage;
  `.execute(db);
}
