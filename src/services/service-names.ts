import { UsageError } from '../errors.ts';

/** The services servicectl knows: name -> executable, and whether it needs a country. */
export const SERVICES = {
  'imagesys-downloadd': { bin: 'lis_downloadd', component: 'downloadd', perCountry: true },
  'imagesys-thumbnaild': { bin: 'lis_thumbnaild', component: 'thumbnaild', perCountry: true },
  'imagesys-pusherd': { bin: 'lis_pusherd', component: 'pusherd', perCountry: true },
  'imagesys-managerd': { bin: 'lis_managerd', component: 'managerd', perCountry: false },
  'imagesys-imaged': { bin: 'lis_imaged', component: 'imaged', perCountry: false },
} as const;

export type ServiceName = keyof typeof SERVICES;

export function parseServiceName(value: string): ServiceName {
  const name = value.startsWith('imagesys-') ? value : `imagesys-${value}`;
  if (!(name in SERVICES)) throw new UsageError(`unknown service ${JSON.stringify(value)}: expected one of ${Object.keys(SERVICES).join(', ')}`);
  return name as ServiceName;
}

/** `imagesys-downloadd.uk.pid`, `imagesys-managerd.pid`: one instance per service and country. */
export function pidFileName(service: ServiceName, country: string | undefined): string {
  return country ? `${service}.${country}.pid` : `${service}.pid`;
}
