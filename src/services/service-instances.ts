import fs from 'node:fs';
import path from 'node:path';
import type { LisConfig } from '../config/config-schema.ts';
import { parseCountry } from '../config/country.ts';
import { LisError, UsageError } from '../errors.ts';
import { packagePath } from '../util/package-root.ts';
import { SERVICES, parseServiceName, pidFileName, type ServiceName } from './service-names.ts';

/** One running copy of a service: the manager, or a stage daemon for one country. */
export interface ServiceInstance {
  service: ServiceName;
  country: string | undefined;
  executable: string;
  /** The supervisor's pid (what `stop` signals). */
  pidFile: string;
  /** The daemon's pid, written by the daemon itself once it is ready. */
  readyFile: string;
  /** Left by a supervisor whose daemon died before it was ever ready: when and how (supervise.sh names it from pidFile). */
  failedFile: string;
  /** Held by the one servicectl starting or stopping the instance (see servicectl-main's `exclusively`). */
  lockFile: string;
  /** The supervisor's and the daemon's screen output: crashes at start, restarts. */
  outFile: string;
  label: string;
}

/**
 * The instances an action applies to: the one named by --country, or for a
 * per-country service without --country, one per configured country.
 */
export function instancesOf(config: LisConfig, name: string, countryFlag: string | undefined): ServiceInstance[] {
  const service = parseServiceName(name);
  const spec = SERVICES[service];
  const executable = packagePath('bin', spec.bin);
  if (!fs.existsSync(executable)) throw new LisError('ERR_NO_SERVICE', `${service} is not installed (${executable} missing)`);
  if (countryFlag !== undefined && !spec.takesCountry)
    throw new UsageError(`${service} runs once per host for every country: --country does not apply (${spec.bin} has no such flag)`);
  let countries: Array<string | undefined>;
  if (countryFlag !== undefined) countries = [parseCountry(countryFlag, config)];
  else if (!spec.perCountry) countries = [undefined];
  else if (config.countries.length) countries = config.countries;
  else throw new UsageError(`${service} runs per country and the config lists no countries: give --country, e.g. --country uk, or set "countries"`);
  return countries.map((country) => {
    const base = pidFileName(service, country).replace(/\.pid$/, '');
    return {
      service,
      country,
      executable,
      pidFile: path.join(config.services.runDir, `${base}.pid`),
      readyFile: path.join(config.services.runDir, `${base}.ready`),
      failedFile: path.join(config.services.runDir, `${base}.failed`),
      lockFile: path.join(config.services.runDir, `${base}.servicectl.lock`),
      outFile: path.join(config.log.dir, `${spec.component}${country ? `.${country}` : ''}.out`),
      label: country ? `${service} (${country})` : service,
    };
  });
}
