import { UsageError } from '../errors.ts';
import type { LisConfig } from './config-schema.ts';

/**
 * `UK` or `uk` -> `uk`; anything else is a usage error that says what is
 * accepted. `name` is what the caller gave it as: a command's `--country`, or
 * the Interface's `ImageSys.enqueue: country` (which has no flags).
 */
export function parseCountry(value: string, config: Pick<LisConfig, 'countries'>, name = '--country'): string {
  const country = value.trim().toLowerCase();
  if (!/^[a-z]{2,3}$/.test(country)) throw new UsageError(`${name} ${JSON.stringify(value)}: expected a 2-3 letter country code such as uk`);
  if (config.countries.length && !config.countries.includes(country)) {
    throw new UsageError(`${name} ${value}: not one of the configured countries (${config.countries.join(', ')})`);
  }
  return country;
}

/** A whole number within bounds, for numeric flags; the error names the flag. */
export function parseIntFlag(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} ${JSON.stringify(value)}: expected a whole number from ${min} to ${max}`);
  }
  return n;
}
