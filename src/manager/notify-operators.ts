import type { Alert } from '../alerts/alert.ts';
import type { MailChannel } from '../alerts/mail-channel.ts';
import { redactSecrets } from '../alerts/redact-secrets.ts';
import type { Logger } from '../log/create-logger.ts';
import { errorMessage } from '../errors.ts';

/** Where operators are told, besides the error log; secrets are what must never reach a log. */
export interface OperatorChannels {
  log: Logger;
  host: string;
  mail: MailChannel | null;
  webhookUrl: string | null;
  secrets: Array<string | null>;
}

/**
 * Tells the operators: always the error log (which their log watching may
 * follow), and by mail and a JSON POST to the webhook when configured. A
 * channel that fails is logged (its secrets removed), never fatal. Returns
 * false when every configured channel beyond the log failed, so the caller can
 * try again later.
 */
export async function notifyOperators(channels: OperatorChannels, alert: Alert): Promise<boolean> {
  const { log } = channels;
  const scope = { scope: 'Manager::notify' };
  log.error(`${alert.subject}: ${alert.detail}`, scope);
  const tries: Array<Promise<boolean>> = [];
  const failed = (what: string) => (error: unknown) => {
    log.error(`${what} failed for "${alert.subject}": ${redactSecrets(errorMessage(error), channels.secrets)}`, scope);
    return false;
  };
  if (channels.mail) tries.push(channels.mail.send(alert, channels.host).then(() => true, failed('mail (alerts.smtp)')));
  if (channels.webhookUrl) {
    const json = { source: 'imagesys', at: new Date().toISOString(), host: channels.host, ...alert };
    const webhookUrl = channels.webhookUrl;
    tries.push(
      // got is loaded when an alert is sent, as nodemailer is (mail-channel.ts): imported at the top, it and its
      // HTTP/2 and cache modules (~300 KB) were parsed at every start of lis_cron_frontend and lis_managerd.
      // got retries no POST unless told: the alert's `key` lets a receiver drop a repeat, so a retry is safe.
      import('got')
        .then(({ default: got }) => got.post(webhookUrl, { json, timeout: { request: 10_000 }, retry: { limit: 2, methods: ['POST'] } }))
        .then(() => true, failed('the webhook (alerts.webhookUrl)')),
    );
  }
  if (tries.length === 0) return true;
  return (await Promise.all(tries)).some(Boolean);
}
