import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { StoreIdentities } from '../db/schema.ts';
import { LisError } from '../errors.ts';
import { storesDiffer } from './store-identity.ts';
import type { WorkerIdentity } from './worker-registry.ts';

/**
 * Refuses to start a worker under a host name that another machine runs as: a live worker of the same name (beaten
 * within `liveSeconds`) whose stores are not ours. Rows name their host in store_host, and each stage after download
 * claims its host's rows: two machines with one name (a config copied with its `host`, or LIS_HOST) would take each
 * other's rows, find their files missing (original_missing, thumbnail_missing, uncharged) and send them back to be
 * made again, over and over, half the work thrown away with no error but that churn.
 */
export async function refuseHostNameClash(db: Db, identity: WorkerIdentity, liveSeconds: number): Promise<void> {
  const clash = await hostNameClash(db, identity, liveSeconds);
  if (clash) throw new LisError('ERR_HOST_NAME_TAKEN', clash);
}

/**
 * Why `identity` (its host name and stores) is not the machine that runs as that host name now, or null: the words
 * of ERR_HOST_NAME_TAKEN. Also asked by lis_cron_frontend before it walks this host's stores, where a machine of a
 * copied name would send every row of the other machine back a stage, its files not being on this one's disks.
 */
export async function hostNameClash(db: Db, identity: Pick<WorkerIdentity, 'id' | 'host' | 'stores'>, liveSeconds: number): Promise<string | null> {
  const ours = identity.stores;
  if (!ours) return null;
  const { rows } = await sql<{ id: string; component: string; country: string | null; stores: StoreIdentities; silent: number }>`
    SELECT id, component, country, stores, extract(epoch FROM now() - heartbeat_at)::float8 AS silent
      FROM workers
     WHERE host = ${identity.host} AND id <> ${identity.id} AND stopped_at IS NULL AND stores IS NOT NULL
       AND heartbeat_at > now() - make_interval(secs => ${liveSeconds}::float8)
     ORDER BY heartbeat_at DESC`.execute(db);
  for (const other of rows) {
    const kinds = storesDiffer(ours, other.stores);
    if (kinds.length === 0) continue;
    const named = kinds.map((k) => `${k} store (stores.${k}: marker ${ours[k]} here, ${other.stores[k]} there)`).join(' and ');
    return (
      `another machine already runs as host "${identity.host}": worker ${other.id} (${other.component}${other.country ? ` ${other.country}` : ''}, last heartbeat ${Math.round(other.silent)}s ago) uses another ${named}. ` +
      `Rows name the host whose stores hold their files (store_host), so two machines with one name take each other's rows and find their files missing. ` +
      `Give each machine its own name ("host" in the config, or LIS_HOST), or set stores.shared if both mount the same stores. ` +
      `Or, if this machine's store was made anew since ${other.id} started, restart that worker`
    );
  }
  return null;
}
