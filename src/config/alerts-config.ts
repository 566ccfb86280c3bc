import * as z from 'zod';

/**
 * Telling operators: what is worth waking someone for, and how they are
 * reached (mail through SMTP, a webhook, or both; the error log always).
 */
export const alertsConfigSchema = z.strictObject({
  /** Mail through an SMTP server; null host: no mail. */
  smtp: z
    .strictObject({
      host: z.string().min(1).nullable().default(null),
      port: z.number().int().min(1).max(65535).default(587),
      /** True: TLS from the first byte (port 465); false: STARTTLS when the server offers it, required with a login (unless on loopback). */
      secure: z.boolean().default(false),
      user: z.string().nullable().default(null),
      /** Never logged. Better in LIS_SMTP_PASSWORD than in the file. */
      password: z.string().nullable().default(null),
      from: z.string().min(3).default('imagesys@localhost'),
      to: z.array(z.string().min(3)).default([]),
      /** Connecting and the server's greeting, each; a silent server costs this once a run (then the mail waits for the next run). */
      timeoutSeconds: z.number().positive().max(300).default(15),
    })
    .prefault({}),
  /** A URL that gets each alert as a JSON POST (chat, pager); never logged. Falls back to manager.webhookUrl. */
  webhookUrl: z
    .url({ protocol: /^https?$/, error: 'an http:// or https:// URL' })
    .nullable()
    .default(null),
  /** The same alert (same thing, same cause) is not sent again within this many minutes while it lasts. */
  dedupeMinutes: z.number().positive().default(360),
  /** At most this many alerts an hour, all kinds together; the rest wait for the next hour (and are logged). */
  maxPerHour: z.number().int().positive().default(20),
  /** A frontend unreachable for longer than this is alerted. */
  frontendDownMinutes: z.number().positive().default(30),
  /** A bucket we operate whose endpoint has failed us for at least this long is alerted (a restart of seconds is not). */
  s3DownMinutes: z.number().int().min(0).default(5),
  /** Our way out (network, DNS resolver, proxy) failing downloads for at least this long is alerted (a blip is not). */
  networkDownMinutes: z.number().int().min(0).default(5),
  /** A stage whose share of failed rows over the last windowMinutes is far above its usual. */
  errorRate: z
    .strictObject({
      windowMinutes: z.number().int().min(5).default(60),
      /** "Usual": the share over this many hours before the window. */
      baselineHours: z.number().positive().default(168),
      /** Alert at this many times the usual share ... */
      factor: z.number().gt(1).default(3),
      /** ... and at least this share (a stage that usually never fails is not alerted for 1 failure in 1000) ... */
      minRate: z.number().gt(0).max(1).default(0.2),
      /** ... with at least this many rows worked in the window. */
      minRows: z.number().int().positive().default(100),
    })
    .prefault({}),
});

export type AlertsConfig = z.infer<typeof alertsConfigSchema>;
