import type { AlertKind } from '../alerts/alert.ts';
import { findAlerts } from '../alerts/alert-sources.ts';
import { deliverAlerts, type DeliveryReport } from '../alerts/deliver-alerts.ts';
import { mailChannel } from '../alerts/mail-channel.ts';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import type { Logger } from '../log/create-logger.ts';
import { notifyOperators } from './notify-operators.ts';

/**
 * The `alerts` check: finds what operators must be told (of the kinds asked
 * for, default all) and tells them, de-duplicated and rate limited.
 */
export async function runAlerts(ctx: { config: LisConfig; db: Db; log: Logger }, kinds?: AlertKind[]): Promise<DeliveryReport> {
  const { config, db, log } = ctx;
  const alerts = await findAlerts(db, config.alerts, kinds);
  const mail = mailChannel(config.alerts.smtp);
  const webhookUrl = config.alerts.webhookUrl ?? config.manager.webhookUrl;
  const channels = { log, host: config.host, mail, webhookUrl, secrets: [webhookUrl, config.alerts.smtp.password] };
  try {
    const report = await deliverAlerts(db, alerts, config.alerts, (alert) => notifyOperators(channels, alert));
    if (report.held.length) {
      log.warn(`${report.held.length} alerts held back by alerts.maxPerHour (${config.alerts.maxPerHour}): ${report.held.map((a) => a.subject).join('; ')}`, {
        scope: 'Manager::alerts',
      });
    }
    return report;
  } finally {
    mail?.close();
  }
}
