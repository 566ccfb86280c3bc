/**
 * How an `s3_unavailable` failure names its bucket, written by the S3 fetch and read back by the alert that
 * tells operators which bucket is down (the per-minute figures it starts from know datasources, not buckets).
 */

/** Where the bucket's requests go, for people: its configured endpoint, or AWS's own for the region. */
export function endpointLabel(endpoint: string | null, region: string): string {
  return endpoint ?? `AWS's endpoint for ${region}`;
}

/** The row's `last_error` for a bucket of ours whose endpoint is down: the bucket first, then where, then what it said. */
export function s3UnavailableReason(bucket: string, where: string, cause: string): string {
  return `S3 bucket ${bucket} unavailable at ${where} (imaged.s3 operatedBy "us": our outage, not the image's): ${cause}`;
}

/** A POSIX regular expression (for SQL's `substring(... from ...)`, and JavaScript) whose group is the bucket. */
export const S3_UNAVAILABLE_BUCKET = '^S3 bucket ([a-z0-9][a-z0-9.-]*) unavailable at ';
