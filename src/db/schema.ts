import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type { Stage, State } from './queue-columns.ts';

/** Columns the database fills in; writable, but never needed on insert. */
type Defaulted<T> = ColumnType<T, T | undefined, T>;
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

/** One image of one country: the queue row and, once live, what the search API shows. */
export interface LiveImagesTable {
  id: Generated<string>;
  country: string;
  image_url: string;
  /** md5(image_url), computed by the database. */
  image_hash: ColumnType<string, never, never>;
  datasource_id: number;
  /** The version being worked on (thumbnailed, pushed); equals live_data once live. */
  image_data: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  /** What the frontends serve and the Interface answers with; kept while the row is reworked (null: never live). */
  live_data: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  insert_time: Timestamp;
  human_classified: Defaulted<boolean>;
  image_class: string | null;
  /** 64-bit dHash of the picture (signed), set by lis_thumbnaild; pg returns bigint as a string. */
  perceptual_hash: ColumnType<string | null, string | null | undefined, string | null>;
  stage: Defaulted<Stage>;
  state: Defaulted<State>;
  store_host: Defaulted<string>;
  locked_by: string | null;
  locked_at: Date | null;
  attempts: Defaulted<number>;
  next_attempt_at: Timestamp;
  last_error: string | null;
  last_error_class: string | null;
  last_seen: Timestamp;
  updated_at: Timestamp;
  /**
   * Failures in a row of class `streak_class` (failRows). Rows given back for our fault (deferRows) change
   * last_error_class but neither reset nor extend the streak; a failure of another class starts a new one.
   */
  same_error_count: Defaulted<number>;
  /** The class of the current streak; null when there is none (same_error_count 0). */
  streak_class: string | null;
  /** lis_downloadd: SHA-256 hex of the original's bytes; identical images at different URLs share it. */
  content_hash: string | null;
  /** lis_downloadd: validators the server sent, for conditional requests on refresh. */
  etag: string | null;
  last_modified: string | null;
  /** lis_downloadd: when the original was last fetched or confirmed unchanged. */
  downloaded_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  original_bytes: number | null;
  /** lis_downloadd: jpeg, png, webp, gif, avif, heif or tiff, from the magic number. */
  original_format: string | null;
}

export interface DatasourcesTable {
  country: string;
  datasource_id: number;
  sharpen: string | null;
  gamma: number | null;
  quality: number | null;
  enabled: Defaulted<boolean>;
  disabled_reason: string | null;
  disabled_at: Date | null;
  updated_at: Timestamp;
}

export interface FrontendsTable {
  name: string;
  target: string;
  enabled: Defaulted<boolean>;
  added_at: Timestamp;
  updated_at: Timestamp;
  /** Since when rsync could not reach it (null: reachable); only its own pushes wait meanwhile. */
  down_since: Date | null;
  down_reason: string | null;
  /** The pushing host (config.host) whose push found it down: only that host's success clears the mark. */
  down_host: string | null;
}

export interface FrontendPushesTable {
  frontend: string;
  country: string;
  image_hash: string;
  pushed_at: Date | null;
  attempts: Defaulted<number>;
  last_error: string | null;
  /** md5 of the row's `image_data->'presets'` when pushed: a changed row counts as not pushed. */
  files_digest: string | null;
  /** Backfill tries this frontend again for the row no sooner than this. */
  next_attempt_at: Timestamp;
  updated_at: Timestamp;
  /** With shared stores: the token of the backfill pass sending it now (see src/push/backfill-claims.ts). */
  claimed_by: number | null;
}

export interface WorkersTable {
  id: string;
  component: string;
  host: string;
  pid: number;
  country: string | null;
  started_at: Timestamp;
  heartbeat_at: Timestamp;
  stopped_at: Date | null;
  /** bigint: pg returns it as a string. */
  rows_done: ColumnType<string, number | undefined, number | string>;
  rows_failed: ColumnType<string, number | undefined, number | string>;
  /** Rows it held at its last heartbeat. */
  holding: Defaulted<number>;
  stage: string | null;
  /** Set while the worker has stopped claiming because of our own fault (a store full or unwritable). */
  paused_reason: string | null;
  paused_since: Date | null;
  /** When it last finished, failed or gave back a row of its chunk: liveness by progress. */
  progress_at: Date | null;
  /** Its host's stores as it started (StoreIdentities: a digest of each store's marker, null when unmarked); null with stores.shared. */
  stores: ColumnType<StoreIdentities | null, string | null | undefined, string | null>;
  /** The release (package version) it runs, as it registered; null for a worker of a release before the column. */
  release: ColumnType<string | null, string | null | undefined, string | null>;
}

/** A digest of each store's marker file (`.imagesys-store`), null when the store has none (not made, or not mounted). */
export interface StoreIdentities {
  originals: string | null;
  thumbnails: string | null;
}

/** Rows done and failed per worker per minute: the last hour's figures and throughput. */
export interface WorkerMinutesTable {
  worker_id: string;
  minute: Timestamp;
  component: string;
  country: string | null;
  done: Defaulted<number>;
  /** Tries that failed by the source's fault. */
  failed: Defaulted<number>;
  /** Rows given back for our own fault of a class the stage's error-rate alert judges (ownedByStageErrorRate). */
  ours: Defaulted<number>;
}

/** Outcomes per datasource per minute; error_class '' means done. */
export interface DatasourceMinutesTable {
  country: string;
  datasource_id: number;
  minute: Timestamp;
  stage: string;
  error_class: string;
  n: number;
}

/** The queue's depth per minute (written by lis_managerd). */
export interface QueueSamplesTable {
  at: Timestamp;
  country: string;
  stage: string;
  due: number;
  later: number;
  held: number;
}

/** What the manager healed, one line per action. */
export interface ManagerEventsTable {
  id: Generated<string>;
  at: Timestamp;
  check_name: string;
  country: string | null;
  subject: string | null;
  rows: Defaulted<number>;
  detail: string;
}

/** An alert told to operators, by what it is about: de-duplication and the hourly cap. */
export interface AlertsSentTable {
  key: string;
  kind: string;
  sent_at: Timestamp;
  subject: string;
  /** Null while claimed and not yet delivered (see deliverAlerts). */
  delivered_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

/** A claimable row of live_images (waiting, unlocked, not live), keyed as the claim looks it up. */
export interface ClaimableRowsTable {
  id: string;
  country: string;
  stage: string;
  store_host: string;
  next_attempt_at: Timestamp;
  /** 0: a new row (never live); 1: a rework of a live row. The claim takes 0 first. */
  priority: Defaulted<number>;
}

export interface Database {
  live_images: LiveImagesTable;
  claimable_rows: ClaimableRowsTable;
  datasources: DatasourcesTable;
  frontends: FrontendsTable;
  frontend_pushes: FrontendPushesTable;
  workers: WorkersTable;
  worker_minutes: WorkerMinutesTable;
  manager_events: ManagerEventsTable;
  datasource_minutes: DatasourceMinutesTable;
  queue_samples: QueueSamplesTable;
  alerts_sent: AlertsSentTable;
}

export type LiveImage = Selectable<LiveImagesTable>;
export type NewLiveImage = Insertable<LiveImagesTable>;
export type Worker = Selectable<WorkersTable>;
