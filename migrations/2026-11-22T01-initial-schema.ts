import { sql, type Kysely } from 'kysely';

/**
 * The queue and its companions. Column names of live_images come from the
 * system this replaces; the queue columns are ours.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE FUNCTION lis_hash_for_url(url text) RETURNS text
      LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT md5(url) $$;
    CREATE FUNCTION lis_path_for_hash(hash text) RETURNS text
      LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
      AS $$ SELECT substr(hash, 1, 2) || '/' || substr(hash, 3, 2) || '/' || hash $$;

    CREATE TABLE live_images (
      id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      country          text NOT NULL CHECK (country ~ '^[a-z]{2,3}$'),
      image_url        text NOT NULL CHECK (image_url ~ '^https?://'),
      -- Computed here, so that an ETL's plain INSERT of country, datasource and URL queues an image.
      image_hash       text GENERATED ALWAYS AS (md5(image_url)) STORED,
      datasource_id    integer NOT NULL,
      image_data       jsonb,
      insert_time      timestamptz NOT NULL DEFAULT now(),
      human_classified boolean NOT NULL DEFAULT false,
      image_class      text,
      stage            text NOT NULL DEFAULT 'download' CHECK (stage IN ('download', 'thumbnail', 'push', 'live')),
      state            text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'failed', 'parked', 'done')),
      -- The host whose stores hold this row's files; '' before download, or when the stores are shared.
      store_host       text NOT NULL DEFAULT '',
      locked_by        text,
      locked_at        timestamptz,
      attempts         integer NOT NULL DEFAULT 0,
      next_attempt_at  timestamptz NOT NULL DEFAULT now(),
      last_error       text,
      last_error_class text,
      last_seen        timestamptz NOT NULL DEFAULT now(),
      updated_at       timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT live_images_country_hash UNIQUE (country, image_hash),
      CONSTRAINT live_images_lock_pair CHECK ((locked_by IS NULL) = (locked_at IS NULL))
    ) WITH (fillfactor = 50);

    -- Only waiting rows are in it, so its size follows the backlog, not the table. No index
    -- mentions locked_by or locked_at, so that a claim is a HOT update that touches no index.
    CREATE INDEX live_images_claim ON live_images (country, stage, store_host, id)
      WHERE state = 'waiting';

    -- Wakes idle daemons: one notification per (country, stage) that gained claimable rows.
    CREATE FUNCTION lis_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('lis_work', w.country || ':' || w.stage)
        FROM (SELECT DISTINCT country, stage FROM new_rows
               WHERE state = 'waiting' AND locked_by IS NULL AND stage <> 'live') w;
      RETURN NULL;
    END $$;
    CREATE TRIGGER live_images_notify_insert AFTER INSERT ON live_images
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lis_notify_work();
    CREATE TRIGGER live_images_notify_update AFTER UPDATE ON live_images
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lis_notify_work();

    CREATE TABLE datasources (
      country         text NOT NULL CHECK (country ~ '^[a-z]{2,3}$'),
      datasource_id   integer NOT NULL,
      -- NULL: the config's default.
      sharpen         text,
      gamma           real,
      quality         smallint CHECK (quality BETWEEN 1 AND 100),
      enabled         boolean NOT NULL DEFAULT true,
      disabled_reason text,
      disabled_at     timestamptz,
      updated_at      timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (country, datasource_id)
    );

    CREATE TABLE frontends (
      name            text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]+$'),
      target          text NOT NULL,
      enabled         boolean NOT NULL DEFAULT true,
      added_at        timestamptz NOT NULL DEFAULT now(),
      updated_at      timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE frontend_pushes (
      frontend    text NOT NULL REFERENCES frontends (name) ON DELETE CASCADE,
      country     text NOT NULL,
      image_hash  text NOT NULL,
      pushed_at   timestamptz,
      attempts    integer NOT NULL DEFAULT 0,
      last_error  text,
      PRIMARY KEY (frontend, country, image_hash)
    );

    CREATE TABLE workers (
      id           text PRIMARY KEY,
      component    text NOT NULL,
      host         text NOT NULL,
      pid          integer NOT NULL,
      country      text,
      started_at   timestamptz NOT NULL DEFAULT now(),
      heartbeat_at timestamptz NOT NULL DEFAULT now(),
      stopped_at   timestamptz,
      rows_done    bigint NOT NULL DEFAULT 0,
      rows_failed  bigint NOT NULL DEFAULT 0
    );
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    DROP TABLE workers, frontend_pushes, frontends, datasources, live_images;
    DROP FUNCTION lis_notify_work(), lis_path_for_hash(text), lis_hash_for_url(text);
  `.execute(db);
}
