import fs from 'node:fs';
import type client from 'prom-client';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import type { Logger } from '../log/create-logger.ts';
import { basePortOf, instanceMetricsPort, metricsUrlFile } from '../config/metrics-ports.ts';
import type { startPrometheusExporter } from './prometheus-exporter.ts';
import { exposedBindWarning } from '../util/bind-address.ts';
import { replaceWhole } from '../util/exclusive-file.ts';

export type InstanceExporter = Awaited<ReturnType<typeof startPrometheusExporter>>;

/**
 * A daemon instance's /metrics and /health, on its own port (see
 * instanceMetricsPort; `portFlag` from --metrics-port wins), with its URL
 * written to the run dir (`imagesys-downloadd.uk.metrics`) so that a port
 * picked at random can be found. Null when no port is configured.
 */
export async function startInstanceExporter(options: {
  config: LisConfig;
  db: Db;
  log: Logger;
  component: string;
  country: string | undefined;
  portFlag: number | undefined;
  extra?: (registry: client.Registry) => void;
}): Promise<InstanceExporter | null> {
  const { config, component, country } = options;
  const port = options.portFlag ?? instanceMetricsPort(basePortOf(config.metrics.ports, component), country, config.countries);
  if (port === null) return null;
  // Loaded only when metrics are served: prom-client costs a daemon ~6 MB of RSS it would never use otherwise.
  const { startPrometheusExporter } = await import('./prometheus-exporter.ts');
  const exporter = await startPrometheusExporter({
    db: options.db,
    component,
    country,
    host: config.metrics.host,
    port,
    stores: { originals: config.stores.originals, thumbnails: config.stores.thumbnails },
    heartbeatSeconds: config.queue.heartbeatSeconds,
    extra: options.extra,
  });
  const urlFile = metricsUrlFile(config.services.runDir, component, country);
  fs.mkdirSync(config.services.runDir, { recursive: true });
  // Whole or absent: a scraper's discovery (or a test) that finds the file must never read it empty.
  replaceWhole(urlFile, `${exporter.url}\n`);
  options.log.info(`Prometheus metrics at ${exporter.url} (health at ${exporter.url.replace(/\/metrics$/, '/health')})`, { scope: `${component}::metrics` });
  const warning = exposedBindWarning('Prometheus /metrics', config.metrics.host);
  if (warning) options.log.warn(warning, { scope: `${component}::metrics` });
  const close = exporter.close;
  return {
    ...exporter,
    close: async () => {
      fs.rmSync(urlFile, { force: true });
      await close();
    },
  };
}
