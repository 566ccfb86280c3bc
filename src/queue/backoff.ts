export interface BackoffPolicy {
  baseSeconds: number;
  maxSeconds: number;
  /** 0..1: the share of the delay that is random. */
  jitter: number;
}

/**
 * Seconds to wait before attempt `attempt + 1`, after `attempt` failures
 * (1 = the first failure): base * 2^(attempt-1), capped, with the top
 * `jitter` share of it drawn at random so that a failing host's rows do not
 * all come back in the same second.
 */
export function backoffSeconds(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponential = Math.min(policy.maxSeconds, policy.baseSeconds * 2 ** Math.max(0, attempt - 1));
  return exponential * (1 - policy.jitter * random());
}

/** A server's own `Retry-After` wins when it asks for longer than our backoff. */
export function retryDelaySeconds(attempt: number, policy: BackoffPolicy, retryAfterSeconds?: number, random?: () => number): number {
  const ours = backoffSeconds(attempt, policy, random);
  if (retryAfterSeconds === undefined || !(retryAfterSeconds > 0)) return ours;
  return Math.min(Math.max(ours, retryAfterSeconds), Math.max(policy.maxSeconds, retryAfterSeconds));
}
