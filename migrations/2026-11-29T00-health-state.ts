import { sql, type Kysely } from 'kysely';

/**
 * Our own side's health, where the manager (and its alerts) can read it:
 * a worker that paused itself because a store it needs is full or unwritable
 * says so and since when, and when it last made progress on its chunk (liveness
 * by progress, not by a heartbeat timer); a frontend that cannot be reached
 * records since when, so only its own pushes wait and an alert can fire after
 * a configured time.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE workers ADD COLUMN paused_reason text;
    ALTER TABLE workers ADD COLUMN paused_since timestamptz;
    ALTER TABLE workers ADD COLUMN progress_at timestamptz;
    ALTER TABLE frontends ADD COLUMN down_since timestamptz;
    ALTER TABLE frontends ADD COLUMN down_reason text;
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE workers DROP COLUMN paused_reason, DROP COLUMN paused_since, DROP COLUMN progress_at;
    ALTER TABLE frontends DROP COLUMN down_since, DROP COLUMN down_reason;
  `.execute(db);
}
