// What /proc says of a process (Linux): its peak RSS and its CPU time. For the benches' figures.
import fs from 'node:fs';

/** Clock ticks a second in /proc/<pid>/stat (USER_HZ: 100 on Linux). */
const TICKS_PER_SECOND = 100;

/**
 * Peak RSS in kB: VmHWM, not getrusage's maxRSS, which on Linux keeps the parent's RSS at fork across exec
 * (a parent that had made big PNGs showed as a 550 MB child). 0 when the process is gone.
 */
export function peakRssKb(pid: number | 'self'): number {
  try {
    return Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * CPU seconds (user + system) a process has used; with `children`, also those of its children it has
 * reaped (lis_pusherd's rsync clients). 0 when the process is gone or not on this machine.
 */
export function cpuSeconds(pid: number, options: { children?: boolean } = {}): number {
  try {
    // The fields after the command name (which may hold spaces) in ")": utime is the 12th of them.
    const fields = fs
      .readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /s, '')
      .split(' ');
    return fields.slice(11, options.children ? 15 : 13).reduce((sum, ticks) => sum + Number(ticks), 0) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/**
 * The whole machine's CPU time so far, from /proc/stat's first line: busy and idle seconds over all cores, and of
 * the busy ones those the hypervisor took for other guests (steal: on a shared host, a cause of noise no load
 * average shows).
 */
export function machineCpu(): MachineCpu {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { busy: (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND, idle: (idle + iowait) / TICKS_PER_SECOND, steal: steal / TICKS_PER_SECOND };
}

export interface MachineCpu {
  busy: number;
  idle: number;
  steal: number;
}

/** The share of the machine's CPU that was busy between two machineCpu() readings (0-1). */
export function busyShare(before: MachineCpu, after: MachineCpu): number {
  const busy = after.busy - before.busy;
  const idle = after.idle - before.idle;
  return busy + idle > 0 ? busy / (busy + idle) : 0;
}

/** The share of the machine's CPU the host took (steal) between two machineCpu() readings (0-1). Pure. */
export function stealShare(before: MachineCpu, after: MachineCpu): number {
  const total = after.busy - before.busy + (after.idle - before.idle);
  return total > 0 ? (after.steal - before.steal) / total : 0;
}

/** `12 %`: a share as a whole percentage. Pure. */
export const percent = (share: number): string => `${(share * 100).toFixed(0)} %`;
