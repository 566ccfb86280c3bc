import { sql, type Kysely } from 'kysely';

/**
 * A frontend's down mark stays its marking host's while pushers of an older release run beside (a rolling upgrade).
 * Those know nothing of frontends.down_host (2026-12-01T00): their success cleared down_since and down_reason and
 * left down_host as it was. So a refused host's mark was cleared by an older host that pushes fine (the alert's
 * 30 minutes never ran out, as before down_host), and the host name stayed behind: the older host's next failure
 * marked the frontend down under that name, and `frontend_down` told the operator to let in a host that was never
 * refused, while the one refused was not named.
 *
 * The trigger tells the writers apart by what they set: this release's clears set down_host to null (its host's
 * success, `lis frontend enable`, a host gone for good); a clear that leaves down_host as it was is an older
 * release's, which cannot speak for the host named, so the mark is kept for that host to clear. A frontend not down
 * never keeps a host name (and so an older release's mark names none, as it did: any host's success clears it).
 * Only statements that set down_since fire it: frontends is a table of a few rows, written on a push's outcome.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    UPDATE frontends SET down_host = NULL WHERE down_since IS NULL AND down_host IS NOT NULL;

    CREATE FUNCTION lis_frontend_down_cleared() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.down_since IS NOT NULL AND NEW.down_host IS NOT NULL AND NEW.down_host IS NOT DISTINCT FROM OLD.down_host THEN
        NEW.down_since := OLD.down_since;
        NEW.down_reason := OLD.down_reason;
      ELSE
        NEW.down_host := NULL;
      END IF;
      RETURN NEW;
    END $$;

    CREATE TRIGGER frontends_down_mark_kept BEFORE UPDATE OF down_since ON frontends
      FOR EACH ROW WHEN (NEW.down_since IS NULL)
      EXECUTE FUNCTION lis_frontend_down_cleared();
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    DROP TRIGGER frontends_down_mark_kept ON frontends;
    DROP FUNCTION lis_frontend_down_cleared();
  `.execute(db);
}
