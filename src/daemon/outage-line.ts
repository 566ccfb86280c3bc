import { isNotAnswering } from '../db/database-error.ts';
import { errorMessage } from '../errors.ts';

/**
 * A log line for a database outage: "Database not answering (`doing`)" when it hangs (a bound of
 * query-bounds.ts's QueryBounds ran out), else `failed` and the error: the operator learns which of the two it is. Pure.
 */
export function outageLine(doing: string, failed: string, error: unknown): string {
  return `${isNotAnswering(error) ? `Database not answering (${doing})` : failed}: ${errorMessage(error)}`;
}
