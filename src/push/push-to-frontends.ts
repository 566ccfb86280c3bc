import type { PushConfig } from '../config/push-config.ts';
import type { Db } from '../db/connect.ts';
import type { Frontend } from './frontend-registry.ts';
import { localRootAway, pushedTo } from './frontend-root-check.ts';
import type { LimitFunction } from 'p-limit';
import { pushKey, type FrontendRowOutcome, type PushRow } from './push-plan.ts';
import { buildRsyncInvocation } from './rsync-command.ts';
import { lostDestinationRace, type RsyncOutcome } from './rsync-outcome.ts';
import { runRsync } from './run-rsync.ts';
import type { RsyncMovement } from './rsync-movement.ts';
import { findMissingFiles } from './store-files.ts';

/** One frontend's rsync of a chunk, for the log and the lag warning. */
export interface FrontendTransfer {
  frontend: string;
  rows: number;
  files: number;
  outcome: RsyncOutcome;
  seconds: number;
  /** What the first rsync said when it lost the race to make the destination folder and was run again. */
  lostRace?: string;
}

/**
 * Runs one rsync per frontend of its planned rows, all frontends at once
 * (within the shared limit), and turns each run into per-row outcomes. On
 * exit 24 (files vanished from the store mid-run) rsync sent everything else,
 * so the store is looked at again: rows whose files are all there count as
 * pushed, the others as `thumbnail_missing`. An rsync that lost the race to
 * make a new destination folder (lostDestinationRace) is run once more.
 */
export async function pushToFrontends(
  plan: Map<string, PushRow[]>,
  frontends: Frontend[],
  options: {
    config: PushConfig;
    storeRoot: string;
    limit: LimitFunction;
    db: Db;
    /** The pusher's rsyncs running; with `onProgress`, the chunk's push as progress (see RsyncMovement). */
    movement?: RsyncMovement;
    onProgress?: () => void;
  },
): Promise<{ outcomes: Map<string, FrontendRowOutcome>; transfers: FrontendTransfer[] }> {
  const outcomes = new Map<string, FrontendRowOutcome>();
  const byName = new Map(frontends.map((f) => [f.name, f]));
  const transfers = await Promise.all(
    [...plan].map(async ([name, rows]): Promise<FrontendTransfer> => {
      const frontend = byName.get(name)!;
      const files = rows.flatMap((r) => r.files);
      const started = performance.now();
      // A local root away (its disk not mounted) is that frontend's outage: rsync is not run, as it would
      // write to this host's own disk and the rows would go live without being served.
      // Looked at just before rsync would start (a run may wait its turn in the limit for a while).
      let lostRace: string | undefined;
      // Waiting for a turn behind rsyncs that run is progress too: the wait ends when they do.
      const stopWaiting = options.onProgress ? options.movement?.wait(options.onProgress) : undefined;
      const moved = () => {
        options.onProgress?.();
        options.movement?.moved();
      };
      const outcome = await options
        .limit(async (): Promise<RsyncOutcome> => {
          stopWaiting?.();
          const away = await localRootAway(name, frontend.parsed, () => pushedTo(options.db, name));
          if (away) return { ok: false, errorClass: 'frontend_down', exitCode: null, message: away };
          const invocation = buildRsyncInvocation(options.config, frontend.parsed, options.storeRoot, files);
          const first = await runRsync(invocation, undefined, moved);
          // Lost the race to make a new frontend root (two chunks at once on a new frontend): made now, so once more.
          if (!lostDestinationRace(first)) return first;
          lostRace = first.ok ? undefined : first.message;
          return runRsync(invocation, undefined, moved);
        })
        .finally(() => stopWaiting?.());
      const seconds = (performance.now() - started) / 1000;
      if (outcome.ok) {
        for (const row of rows) outcomes.set(pushKey(name, row.id), { ok: true });
      } else if (outcome.errorClass === 'files_vanished') {
        const gone = await findMissingFiles(options.storeRoot, rows);
        for (const row of rows) {
          const file = gone.get(row.id);
          outcomes.set(
            pushKey(name, row.id),
            file === undefined
              ? { ok: true }
              : { ok: false, errorClass: 'thumbnail_missing', vanished: true, message: `thumbnail vanished from the store during the push: ${file}` },
          );
        }
      } else {
        for (const row of rows) outcomes.set(pushKey(name, row.id), { ok: false, errorClass: outcome.errorClass, message: outcome.message });
      }
      return { frontend: name, rows: rows.length, files: files.length, outcome, seconds, ...(lostRace === undefined ? {} : { lostRace }) };
    }),
  );
  return { outcomes, transfers };
}

/** For the log: `n1: 500 rows, 1500 files, 21.4 MB in 0.8s` or `n3: FAILED rsync exit 10 ...`. */
export function describeTransfer(t: FrontendTransfer): string {
  // A retry is said either way: an operator who sees two connections per chunk in the daemon's log can tell why.
  const retried = t.lostRace === undefined ? '' : ` (run twice: the first rsync lost the race to make the destination folder: ${t.lostRace})`;
  if (!t.outcome.ok) return `${t.frontend}: ${t.rows} rows FAILED after ${t.seconds.toFixed(1)}s: ${t.outcome.message}${retried}`;
  const mb = (t.outcome.stats.bytesTransferred / 1e6).toFixed(1);
  return `${t.frontend}: ${t.rows} rows, ${t.files} files (${t.outcome.stats.filesTransferred} sent, ${mb} MB) in ${t.seconds.toFixed(1)}s${retried}`;
}
