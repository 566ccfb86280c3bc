import { LisError } from '../errors.ts';

/**
 * A download that failed for a reason we recognised ourselves (a status, a
 * refused address, bytes that are not an image). `errorClass` is the stable
 * code recorded in `last_error_class`; the message is the row's `last_error`.
 */
export class DownloadError extends LisError {
  readonly errorClass: string;
  readonly retryable: boolean;
  readonly retryAfterSeconds?: number;
  constructor(errorClass: string, message: string, options: { retryable: boolean; retryAfterSeconds?: number }) {
    super(`ERR_LIS_DOWNLOAD_${errorClass.toUpperCase()}`, message);
    this.name = 'DownloadError';
    this.errorClass = errorClass;
    this.retryable = options.retryable;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

export function refusedAddress(address: string, why: string, host?: string): DownloadError {
  const named = host && host !== address ? `${host} resolves to ` : '';
  return new DownloadError('refused_address', `refused address: ${named}${address} (${why})`, { retryable: false });
}
