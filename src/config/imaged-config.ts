import * as z from 'zod';

/**
 * lis_imaged: the HTTP server that makes a thumbnail a frontend lacks, on the
 * request. See src/imaged/ and the README section "On demand: lis_imaged".
 */

/** An S3 bucket's endpoint and credentials; `s3://<bucket>/<key>` URLs (origins, and the ETL's) are read with them. */
export const s3BucketSchema = z.strictObject({
  /** `http://127.0.0.1:9000` for MinIO or s3rver; null: AWS's own endpoint for the region. */
  endpoint: z
    .string()
    .regex(/^https?:\/\//, 'an http(s) URL')
    .nullable()
    .default(null),
  region: z.string().default('us-east-1'),
  accessKeyId: z.string().min(1),
  secretAccessKey: z.string().min(1),
  /** Path-style URLs (`endpoint/bucket/key`): what MinIO and s3rver need. */
  forcePathStyle: z.boolean().default(true),
  /**
   * Whose the endpoint is, and so whose fault it is when it is down or answers 5xx. `us` (a MinIO next to
   * us): our outage, rows given back uncharged and the s3_unavailable alert; `source` (a feed's own bucket):
   * charged to the row and its datasource, as an HTTP server's. Default `us`: a wrongly charged row is lost
   * work (failed for good, its datasource disabled), a wrongly deferred one only waits, and is alerted.
   */
  operatedBy: z.enum(['us', 'source']).default('us'),
});
export type S3Bucket = z.infer<typeof s3BucketSchema>;

/** Where an origin's originals come from. */
export const originSourceSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('s3'), bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,62}$/, 'an S3 bucket name'), prefix: z.string().default('') }),
  z.strictObject({ type: z.literal('http'), baseUrl: z.string().regex(/^https?:\/\/.+\/$/, 'an http(s) URL ending in /') }),
  z.strictObject({ type: z.literal('folder'), dir: z.string().min(1) }),
]);
export type OriginSource = z.infer<typeof originSourceSchema>;

export const originSchema = z.strictObject({
  /** Rows made for this origin's images belong to this country and datasource. */
  country: z.string().regex(/^[a-z]{2,3}$/),
  datasourceId: z.number().int().min(0).default(0),
  /** The first names the row (`image_url`); the others are fallbacks, tried in parallel with it. */
  sources: z.array(originSourceSchema).min(1),
});
export type Origin = z.infer<typeof originSchema>;

export const imagedConfigSchema = z.strictObject({
  /** Where it listens; the frontends' nginx proxies to it. */
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8480),
  /** Thumbnails made at once by this process; more distinct misses wait. */
  maxGenerations: z.number().int().min(1).max(64).default(3),
  /** Requests waiting for a generation slot; beyond it: 503 with Retry-After. */
  maxWaiting: z.number().int().min(0).max(10000).default(100),
  /** One request's whole life (waiting, fetching, making); then 503. */
  timeoutSeconds: z.number().positive().max(600).default(30),
  /** Retry-After on a 503. */
  retryAfterSeconds: z.number().int().min(1).max(3600).default(5),
  /** Cache-Control of a thumbnail (its name never changes for other bytes of the same preset). */
  cacheControl: z.string().default('public, max-age=86400'),
  /** An image file sent with the 404 for a thumbnail that has no row (null: a short text). */
  placeholder: z.string().nullable().default(null),
  /** Path prefix -> where originals come from (`GET /<origin>/<preset>/<key>`). */
  origins: z.record(z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'an origin name: lower-case letters, digits, -'), originSchema).default({}),
  /** Buckets that `s3://` URLs may name, with their endpoint and credentials. */
  s3: z.record(z.string(), s3BucketSchema).default({}),
});
export type ImagedConfig = z.infer<typeof imagedConfigSchema>;
