import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type { Stage, State } from '../queue/stages.ts';

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
  image_data: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  insert_time: Timestamp;
  human_classified: Defaulted<boolean>;
  image_class: string | null;
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
}

export interface FrontendPushesTable {
  frontend: string;
  country: string;
  image_hash: string;
  pushed_at: Date | null;
  attempts: Defaulted<number>;
  last_error: string | null;
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
}

export interface Database {
  live_images: LiveImagesTable;
  datasources: DatasourcesTable;
  frontends: FrontendsTable;
  frontend_pushes: FrontendPushesTable;
  workers: WorkersTable;
}

export type LiveImage = Selectable<LiveImagesTable>;
export type NewLiveImage = Insertable<LiveImagesTable>;
export type Worker = Selectable<WorkersTable>;
