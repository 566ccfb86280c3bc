import got from 'got';
import type { Logger } from '../log/create-logger.ts';
import { errorMessage } from '../errors.ts';

/**
 * Tells the operators: always the error log (which their alerting watches),
 * and a JSON POST to the configured webhook when there is one (chat, pager,
 * or a mail relay). A webhook that fails is logged, never fatal.
 */
export async function notifyOperators(log: Logger, webhookUrl: string | null, event: { subject: string; detail: string; [k: string]: unknown }): Promise<void> {
  log.error(`${event.subject}: ${event.detail}`, { scope: 'Manager::notify' });
  if (!webhookUrl) return;
  try {
    await got.post(webhookUrl, { json: { source: 'imagesys', at: new Date().toISOString(), ...event }, timeout: { request: 10_000 }, retry: { limit: 2 } });
  } catch (error) {
    log.error(`webhook ${webhookUrl} failed: ${errorMessage(error)}`, { scope: 'Manager::notify' });
  }
}
