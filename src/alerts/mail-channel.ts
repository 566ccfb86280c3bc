import type { Transporter } from 'nodemailer';
import type { AlertsConfig } from '../config/alerts-config.ts';
import { isLoopbackHost } from '../util/bind-address.ts';
import type { Alert } from './alert.ts';

/** Sends alerts as plain-text mail through the configured SMTP server. */
export interface MailChannel {
  send(alert: Alert, host: string): Promise<void>;
  close(): void;
}

/** Pure: the mail an alert becomes. */
export function alertMail(alert: Alert, host: string, smtp: AlertsConfig['smtp']): { from: string; to: string[]; subject: string; text: string } {
  return {
    from: smtp.from,
    to: smtp.to,
    subject: `[ImageSys] ${alert.subject}`,
    text: `${alert.subject}\n\n${alert.detail}\n\nWhat to do: ${alert.action}\n\n(alert ${alert.kind}, key ${alert.key}, from lis_managerd on ${host}; the same alert is not repeated within alerts.dedupeMinutes)\n`,
  };
}

/** nodemailer's codes for a server that cannot take any mail now (not for one message it refused). */
const SERVER_DOWN = new Set(['ETIMEDOUT', 'ECONNECTION', 'ESOCKET', 'EDNS', 'ETLS', 'EAUTH']);

/**
 * Pure: how nodemailer reaches the server. Without `secure`, STARTTLS is taken when the server offers it; with a
 * login it is required (`requireTLS`), unless the server is on this machine (a local relay, reached over loopback,
 * which nobody on the network sees): a server, or anyone between us and it, that does not offer STARTTLS would
 * otherwise be sent the password in plain text (nodemailer logs in without TLS when none is offered).
 */
export function mailTransportOptions(smtp: AlertsConfig['smtp'] & { host: string }) {
  return {
    host: smtp.host,
    port: smtp.port,
    secure: smtp.secure,
    requireTLS: !smtp.secure && smtp.user !== null && !isLoopbackHost(smtp.host),
    auth: smtp.user ? { user: smtp.user, pass: smtp.password ?? '' } : undefined,
    connectionTimeout: smtp.timeoutSeconds * 1000,
    greetingTimeout: smtp.timeoutSeconds * 1000,
    socketTimeout: smtp.timeoutSeconds * 2000,
    // nodemailer's own logging would print the conversation, AUTH included.
    logger: false,
    debug: false,
  };
}

/**
 * Null when no SMTP host or no recipient is configured. One channel serves one run of the alerts check.
 * nodemailer is loaded by the first mail sent, not with the program: lis_managerd and lis_cron_frontend start
 * without it (its modules and Node's tls, dns and crypto with them), and most of their runs send no mail.
 */
export function mailChannel(smtp: AlertsConfig['smtp']): MailChannel | null {
  const { host } = smtp;
  if (!host || smtp.to.length === 0) return null;
  let transport: Promise<Transporter> | null = null;
  // A server that cannot be reached or refuses our login now will for the rest of this run: the later
  // alerts fail at once with its error, instead of each waiting out the timeouts (and delaying its webhook).
  let down: Error | null = null;
  return {
    send: async (alert, from) => {
      if (down) throw down;
      transport ??= import('nodemailer').then(({ default: nodemailer }) => nodemailer.createTransport(mailTransportOptions({ ...smtp, host })));
      const sender = await transport;
      try {
        await sender.sendMail(alertMail(alert, from, smtp));
      } catch (error) {
        if (SERVER_DOWN.has((error as { code?: string }).code ?? '')) down = error as Error;
        throw error;
      }
    },
    close: () => void transport?.then((sender) => sender.close()),
  };
}
