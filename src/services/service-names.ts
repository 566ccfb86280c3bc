import { UsageError } from '../errors.ts';

/**
 * The services servicectl knows: name -> executable, whether it needs a country,
 * and whether its daemon takes --country at all (lis_imaged serves every country
 * and refuses the flag, so servicectl must refuse it too rather than start a
 * daemon that exits at once).
 */
export const SERVICES = {
  'imagesys-downloadd': { bin: 'lis_downloadd', component: 'downloadd', perCountry: true, takesCountry: true },
  'imagesys-thumbnaild': { bin: 'lis_thumbnaild', component: 'thumbnaild', perCountry: true, takesCountry: true },
  'imagesys-pusherd': { bin: 'lis_pusherd', component: 'pusherd', perCountry: true, takesCountry: true },
  'imagesys-managerd': { bin: 'lis_managerd', component: 'managerd', perCountry: false, takesCountry: true },
  'imagesys-imaged': { bin: 'lis_imaged', component: 'imaged', perCountry: false, takesCountry: false },
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
