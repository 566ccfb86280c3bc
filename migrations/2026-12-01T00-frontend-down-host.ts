import { sql, type Kysely } from 'kysely';

/**
 * Which pushing host found a frontend down. With pushers on several hosts, one host may be refused (its
 * address not in `hosts allow`, its key not in authorized_keys, a wrong rsync password) while another
 * pushes fine: the other's successes cleared the mark at once, so the alert (down for 30 min) never fired
 * and the refused host's rows waited for ever, unseen. Now only the host that marked it clears it.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE frontends ADD COLUMN down_host text`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE frontends DROP COLUMN down_host`.execute(db);
}
