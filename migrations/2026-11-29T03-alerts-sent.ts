import { sql, type Kysely } from 'kysely';

/**
 * Alerts told to operators, by what they are about (`key`): the same alert is
 * not sent again within alerts.dedupeMinutes, and at most alerts.maxPerHour go
 * out; shared by every manager on every host, so two managers do not both mail.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE alerts_sent (
      key      text PRIMARY KEY,
      kind     text NOT NULL,
      sent_at  timestamptz NOT NULL DEFAULT now(),
      subject  text NOT NULL
    );
    CREATE INDEX alerts_sent_at ON alerts_sent (sent_at);
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE alerts_sent`.execute(db);
}
