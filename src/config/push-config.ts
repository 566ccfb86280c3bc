import * as z from 'zod';

/**
 * `push`: how lis_pusherd runs rsync to the frontends. Frontends themselves
 * (name, target, enabled) live in the database, managed with `lis frontend`.
 */
export const pushConfigSchema = z.strictObject({
  /** The rsync executable (a name on PATH or a full path). */
  rsyncPath: z.string().min(1).default('rsync'),
  /** rsync `--timeout`: seconds without any data moving before rsync gives up (exit 30). */
  timeoutSeconds: z.number().int().positive().max(86400).default(60),
  /** Seconds to wait for a frontend to answer: rsync `--contimeout` for rsync daemons, ssh `ConnectTimeout` for ssh. */
  connectTimeoutSeconds: z.number().int().positive().max(3600).default(15),
  /** rsync `--bwlimit` per transfer, e.g. `20m` or `5000` (KiB/s); null: no limit. */
  bwLimit: z
    .string()
    .regex(/^\d+(\.\d+)?[kKmMgG]?$/, 'a rate such as 20m or 5000 (KiB/s)')
    .nullable()
    .default(null),
  /** rsync `--chmod` for what lands on the frontends (with `--perms`), so files are readable by the web server. */
  chmod: z
    .string()
    .regex(/^[DF0-7ugoa+=,rwxXst-]+$/, 'an rsync --chmod value such as D755,F644')
    .default('D755,F644'),
  /** The ssh client for `[user@]host:/path` frontends. */
  sshPath: z.string().min(1).default('ssh'),
  /** Extra ssh arguments, e.g. `["-i", "/etc/imagesys/push_key", "-p", "2222"]`; they win over the built-in `BatchMode=yes` and `ConnectTimeout`. */
  sshOptions: z
    .array(
      z
        .string()
        .min(1)
        .regex(/^[^\n\r\0]*$/, 'no line breaks'),
    )
    .default([]),
  /** For `rsync://user@host/...` frontends that need a password: rsync `--password-file`. */
  daemonPasswordFile: z.string().min(1).nullable().default(null),
  /** rsync processes running at once (one per frontend per chunk, and backfill). */
  maxParallel: z.number().int().positive().max(64).default(8),
  /**
   * Chunks a pusher works at once: while one chunk's rsyncs run, the next is claimed and sent, so the
   * claim, the store check and the records of one overlap the transfers of the other (bench:push: 0.66 of
   * plain rsync per chunk with 1, 1.09 with 2). Each chunk runs one rsync per frontend, within maxParallel.
   */
  chunksAtOnce: z.number().int().min(1).max(8).default(2),
  /**
   * Service mode: how often to look for live rows a frontend lacks (backfill) even when no
   * frontend was added or re-enabled; those changes are seen within `queue.pollSeconds`.
   */
  backfillCheckSeconds: z.number().positive().default(600),
});

export type PushConfig = z.infer<typeof pushConfigSchema>;
