import os from 'node:os';
import * as z from 'zod';
import { alertsConfigSchema } from './alerts-config.ts';
import { downloadConfigSchema } from './download-config.ts';
import { pushConfigSchema } from './push-config.ts';
import { thumbnailConfigSchema } from './thumbnail-config.ts';
import { imagedConfigSchema } from './imaged-config.ts';
import { managerConfigSchema, servicesConfigSchema, upkeepConfigSchema } from './manager-config.ts';
import { MAX_PORT, METRICS_COMPONENTS, metricsPortsPastRange } from './metrics-ports.ts';

/**
 * The whole configuration, with its defaults. Every key is optional in the
 * JSON file: what is left out takes the default shown here, so an empty file
 * (or none at all) runs everything on one machine with an embedded PostgreSQL.
 * Relative paths are resolved against the folder the command runs in.
 */
const positiveInt = z.number().int().positive();
const seconds = z.number().positive();

/** This machine's name in the workers table and in `store_host` (worker ids are `host:pid:random`); `LIS_HOST` obeys it too. */
export const hostNameSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\s:]+$/, 'a host name without spaces or colons');

const configObject = z.strictObject({
  host: hostNameSchema.default(() => os.hostname()),
  /** Countries are lower-case codes such as `uk`; this list is what `--country` accepts (empty: any 2-3 letter code). */
  countries: z.array(z.string().regex(/^[a-z]{2,3}$/, 'a 2-3 letter lower-case country code')).default([]),
  database: z
    .strictObject({
      /** A PostgreSQL URL. When null (and LIS_DATABASE_URL is unset) the embedded server is used. */
      url: z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'a postgres:// or postgresql:// URL')
        .nullable()
        .default(null),
      /** Connections per process. */
      poolSize: positiveInt.max(100).default(8),
      /**
       * The long-running processes' bounds on a database that hangs (query-bounds.ts's QueryBounds): a connect
       * is a few ms on a LAN, so 10 s means a dead path; their queries are short, so 120 s is far above any
       * (and twice manager.staleWorkerSeconds: a daemon whose heartbeat hangs is released before its own
       * bound fires). At most a day: past 24.8 days Node's timers fire at once.
       */
      connectTimeoutSeconds: seconds.max(86_400).default(10),
      queryTimeoutSeconds: seconds.max(86_400).default(120),
      /**
       * Once a service is stopping, how long it waits for one database call (a results write, a give-back, its
       * stop mark) before leaving it to lis_managerd; once one went unanswered, the rest are not waited for.
       * 5 s: far above such a call's few ms, and with the 2 s close it keeps the exit well inside
       * services.stopTimeoutSeconds (60 s) while the database hangs. At most 10 minutes, a stop's whole grace.
       */
      stopWaitSeconds: seconds.max(600).default(5),
      embedded: z
        .strictObject({
          dataDir: z.string().default('./var/pg'),
          port: positiveInt.max(65535).default(54329),
          /** The daemons' role: no superuser; its password is random, kept in `<dataDir>.password` (mode 0600). */
          user: z
            .string()
            .regex(/^[a-z_][a-z0-9_]*$/, 'a plain role name')
            .refine((u) => u !== 'postgres', 'not postgres: that is the superuser')
            .default('imagesys'),
          /** Only for a data folder made before the password files: its superuser's password, used once to upgrade it. */
          password: z.string().default('imagesys'),
          database: z
            .string()
            .regex(/^[a-z_][a-z0-9_]*$/)
            .default('imagesys'),
        })
        .prefault({}),
    })
    .prefault({}),
  stores: z
    .strictObject({
      originals: z.string().default('./var/originals'),
      thumbnails: z.string().default('./var/thumbnails'),
      /** True when the stores sit on a file system every host mounts: then any host may work any row. */
      shared: z.boolean().default(false),
      /** A stage pauses claiming (before the disk is full) when a store it writes has less free than this... */
      minFreeBytes: z
        .number()
        .int()
        .min(0)
        .default(256 * 1024 * 1024),
      /** ... or less than this share of its file system free. */
      minFreePercent: z.number().min(0).max(100).default(1),
      /** How often free space is looked at while all is well. */
      checkSeconds: seconds.default(10),
      /** While paused, the store is looked at again with a backoff capped at this. */
      retryMaxSeconds: seconds.default(60),
    })
    .prefault({}),
  log: z
    .strictObject({
      dir: z.string().default('./var/log'),
      level: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
      /** winston-daily-rotate-file's maxFiles: a count, or days as `14d`. */
      maxFiles: z.union([positiveInt, z.string().regex(/^\d+d$/, 'a count or days such as 14d')]).default('14d'),
      /** Rotate within a day past this size (`100m`, `1g`). */
      maxSize: z
        .string()
        .regex(/^\d+[kmg]$/, 'a size such as 100m')
        .default('100m'),
    })
    .prefault({}),
  queue: z
    .strictObject({
      chunkSize: positiveInt.max(10000).default(500),
      /** Attempts before a retryable failure becomes permanent. */
      maxAttempts: positiveInt.max(100).default(6),
      backoff: z
        .strictObject({
          baseSeconds: seconds.default(30),
          maxSeconds: seconds.default(6 * 3600),
          /** Fraction of the delay drawn at random, so that retries of one failing host spread out. */
          jitter: z.number().min(0).max(1).default(0.25),
        })
        .prefault({}),
      /** Service mode: how often an idle daemon looks for work when no notification came. */
      pollSeconds: seconds.default(5),
      heartbeatSeconds: seconds.default(10),
      /** A worker with no result on its chunk for this long gives it back (and the manager treats it as dead). */
      progressTimeoutSeconds: seconds.default(600),
      /** Rows given back for our own fault (a frontend down, a bug) may be claimed again after this; no attempt is charged. */
      oursRetrySeconds: seconds.default(60),
    })
    .prefault({}),
  /** What the Interface gives listing code. */
  searchApi: z
    .strictObject({
      /** Thumbnail URLs are this plus the file's path below a frontend's root (`uk/a3/0f/<hash>_small.jpg`). */
      thumbnailBaseUrl: z
        .string()
        .regex(/^(https?:\/\/|\/)/, 'an http(s) URL or a path starting with /')
        .default('/thumbs/'),
    })
    .prefault({}),
  /** Prometheus exposition from the daemons (`--metrics-port` on a daemon wins), and the status page. */
  metrics: z
    .strictObject({
      /** Where /metrics and `lis web` listen: loopback unless an operator opens them up. */
      host: z.string().default('127.0.0.1'),
      /** Base port per component (`{"downloadd": 9401}`): a country's daemon adds its place in `countries` (uk 9401, de 9402; the last must stay within 65535, see configSchema); 0: any free port; null or absent: none. Only the components that read it (a typo would leave its daemon without metrics, silently). */
      ports: z.partialRecord(z.enum(METRICS_COMPONENTS), z.number().int().min(0).max(65535).nullable()).default({}),
      /** `lis web`'s port. */
      webPort: z.number().int().min(0).max(65535).default(8470),
      /** Host names `lis web` answers besides localhost, `host`, its bind address and IP addresses (others get 421: DNS rebinding). */
      webHostNames: z.array(z.string().regex(/^[A-Za-z0-9.-]+$/, 'a host name such as status.example.com')).default([]),
    })
    .prefault({}),
  manager: managerConfigSchema.prefault({}),
  alerts: alertsConfigSchema.prefault({}),
  upkeep: upkeepConfigSchema.prefault({}),
  services: servicesConfigSchema.prefault({}),
  download: downloadConfigSchema.prefault({}),
  enqueue: z
    .strictObject({
      maxUrlLength: positiveInt.max(65536).default(2048),
      batchSize: positiveInt.max(100000).default(5000),
    })
    .prefault({}),
  push: pushConfigSchema.prefault({}),
  thumbnail: thumbnailConfigSchema.prefault({}),
  imaged: imagedConfigSchema.prefault({}),
});

export const configSchema = configObject.superRefine((config, ctx) => {
  // A row a stage is still working within its own bound must never be taken for wedged: its chunk was given back
  // at queue.progressTimeoutSeconds (and the download cut), claimed again, and cut again, for ever, uncharged.
  for (const { key, seconds } of rowBoundsPastProgressTimeout(config)) {
    ctx.addIssue({
      code: 'custom',
      path: ['queue', 'progressTimeoutSeconds'],
      message: `${config.queue.progressTimeoutSeconds} s is not longer than ${key} (${seconds} s): a row still within it would be taken for wedged, given back and started again for ever; raise it, or lower ${key}`,
    });
  }
  // A country's instance listens on its base port plus the country's place: past 65535 it could only fail at
  // start, with a bare RangeError. Said here, where both numbers are, naming the key to change.
  for (const { component, country, port } of metricsPortsPastRange(config.metrics.ports, config.countries)) {
    ctx.addIssue({
      code: 'custom',
      path: ['metrics', 'ports', component],
      message: `${country}'s instance (place ${config.countries.indexOf(country)} in countries) would get port ${port}, past ${MAX_PORT}: lower the base port`,
    });
  }
});

/** The per-row bounds of the stages the runner works that are not below queue.progressTimeoutSeconds. */
function rowBoundsPastProgressTimeout(config: z.infer<typeof configObject>): Array<{ key: string; seconds: number }> {
  const bounds = [
    { key: 'download.timeouts.totalSeconds', seconds: config.download.timeouts.totalSeconds },
    { key: 'thumbnail.timeoutSeconds', seconds: config.thumbnail.timeoutSeconds },
    // A push counts as progress while its rsyncs run (RsyncMovement): one that moves nothing must end before that.
    { key: 'push.timeoutSeconds', seconds: config.push.timeoutSeconds },
  ];
  return bounds.filter((b) => b.seconds >= config.queue.progressTimeoutSeconds);
}

export type LisConfig = z.infer<typeof configSchema>;
export type LisConfigInput = z.input<typeof configSchema>;
