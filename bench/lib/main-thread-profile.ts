import fs from 'node:fs';
import path from 'node:path';
import { Session } from 'node:inspector/promises';

/** A V8 CPU profile's parts this file reads. */
interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

/**
 * This process's main thread profiled (V8's sampling profiler, through the inspector) only while start() ... pause()
 * bracket what is measured, e.g. one contender's runs of an interleaved bench. save() writes each profile (for
 * Chrome's DevTools) and a summary: self time by function, then by package or file.
 */
export class MainThreadProfile {
  private readonly session = new Session();
  private readonly profiles: CpuProfile[] = [];
  private enabled = false;

  constructor(private readonly dir: string) {}

  async start(): Promise<void> {
    if (!this.enabled) {
      this.session.connect();
      await this.session.post('Profiler.enable');
      await this.session.post('Profiler.setSamplingInterval', { interval: 200 });
      this.enabled = true;
    }
    await this.session.post('Profiler.start');
  }

  async pause(): Promise<void> {
    const { profile } = (await this.session.post('Profiler.stop')) as unknown as { profile: CpuProfile };
    this.profiles.push(profile);
  }

  /** Writes the profiles and the summary into the folder; returns the summary's path. */
  save(): string {
    fs.mkdirSync(this.dir, { recursive: true });
    this.profiles.forEach((p, i) => fs.writeFileSync(path.join(this.dir, `main-${i}.cpuprofile`), JSON.stringify(p)));
    const summary = path.join(this.dir, 'summary.txt');
    fs.writeFileSync(summary, summarise(this.profiles));
    this.session.disconnect();
    return summary;
  }
}

/** Where a frame's code lives: a package (`pkg:name`), a file of ours, a Node module, or native. Pure. */
function placeOf(url: string): string {
  if (!url) return '(native)';
  const pkg = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `pkg:${pkg[1]}`;
  const ours = /\/((src|bench|test)\/.*)$/.exec(url);
  return ours ? ours[1] : url;
}

/** Self time (ms) by function and by place, over every profile, biggest first. Pure. */
export function summarise(profiles: CpuProfile[]): string {
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  let total = 0;
  for (const profile of profiles) {
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    profile.samples.forEach((id, i) => {
      const ms = (profile.timeDeltas[i] ?? 0) / 1000;
      const frame = nodes.get(id)!.callFrame;
      if (frame.functionName === '(idle)') return;
      total += ms;
      const place = placeOf(frame.url);
      byPlace.set(place, (byPlace.get(place) ?? 0) + ms);
      const name = `${frame.functionName || '(anonymous)'} ${place}:${frame.lineNumber + 1}`;
      byFunction.set(name, (byFunction.get(name) ?? 0) + ms);
    });
  }
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, ms]) => `${ms.toFixed(0).padStart(7)} ms  ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${k}`)
      .join('\n');
  return `busy ${total.toFixed(0)} ms (idle left out)\n\nby function:\n${top(byFunction, 50)}\n\nby place:\n${top(byPlace, 30)}\n`;
}
