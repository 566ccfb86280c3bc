import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import S3rver from 's3rver';
import sharp from 'sharp';
import { ROOT, spawnTs, waitFor, type Spawned } from './processes.ts';
import { freePort } from './free-port.ts';
import { waitForPort } from './rsync-daemons.ts';

/** A photo-like JPEG (gradients and noise), as a listing's original would be. */
export async function photoJpeg(width: number, height: number, seed = 1): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = (x * 255) / width + seed * 17;
      raw[i + 1] = (y * 255) / height;
      raw[i + 2] = ((x ^ y) * seed) & 0xff;
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

/** A real HTTP origin on 127.0.0.1: fixed files, hits counted; a held path answers only once released. */
export class OriginServer {
  readonly hits = new Map<string, number>();
  readonly held = new Set<string>();
  /** Paths answered with their headers and the first half of their body, the rest held back until release(). */
  readonly halfway = new Set<string>();
  private readonly waiting: Array<() => void> = [];
  private readonly arrivals = new Set<(path: string) => void>();
  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static async start(files: Map<string, Buffer>): Promise<OriginServer> {
    let self: OriginServer | null = null;
    const server = http.createServer((req, res) => {
      const p = (req.url ?? '/').split('?')[0];
      self!.hits.set(p, (self!.hits.get(p) ?? 0) + 1);
      for (const arrived of self!.arrivals) arrived(p);
      const answer = () => {
        const body = files.get(p);
        if (!body) return void res.writeHead(404).end('no');
        res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': body.length }).end(body);
      };
      if (self!.held.has(p)) self!.waiting.push(answer);
      else if (self!.halfway.has(p) && files.has(p)) {
        const body = files.get(p)!;
        const half = Math.floor(body.length / 2);
        res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': body.length });
        res.write(body.subarray(0, half));
        self!.waiting.push(() => res.end(body.subarray(half)));
      } else answer();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    self = new OriginServer(server, (server.address() as AddressInfo).port);
    return self;
  }

  url(p: string): string {
    return `http://127.0.0.1:${this.port}${p}`;
  }

  /** Resolves when a request for `p` arrives. */
  arrival(p: string): Promise<void> {
    return new Promise((resolve) => {
      const fn = (got: string) => {
        if (got !== p) return;
        this.arrivals.delete(fn);
        resolve();
      };
      this.arrivals.add(fn);
    });
  }

  release(): void {
    this.held.clear();
    for (const answer of this.waiting.splice(0)) answer();
  }

  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** s3rver's fixed credentials (a fresh object each time: the SDK marks the one it is given). */
export const s3Credentials = () => ({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });

/** s3rver on a loopback port (`port`: the same again, to bring an endpoint back), its data in `dir`, with the given buckets. */
export async function startS3rver(dir: string, buckets: string[], port?: number): Promise<{ endpoint: string; port: number; close: () => Promise<void> }> {
  port ??= await freePort();
  const server = new S3rver({ port, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: buckets.map((name) => ({ name })) });
  await server.run();
  return { endpoint: `http://127.0.0.1:${port}`, port, close: () => server.close() };
}

/** A lis_imaged child process on a free port, ready when it says it listens. */
export async function startImaged(configFile: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<{ run: Spawned; url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const run = spawnTs('bin/lis_imaged', ['--config', configFile, '--port', String(port)], extraEnv);
  await waitFor(() => /lis_imaged listening on/.test(run.output()) || run.child.exitCode !== null, 60_000, 'lis_imaged to listen');
  if (run.child.exitCode !== null) throw new Error(`lis_imaged exited: ${run.output()}`);
  return { run, url: `http://127.0.0.1:${port}`, stop: () => stopProcess(run.child) };
}

export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const closed = once(child, 'close');
  child.kill('SIGTERM');
  await closed;
}

/** What a test changes in the shipped config besides ports and root. */
export interface NginxOptions {
  /** proxy_read_timeout instead of the shipped one, so that a test of a hung lis_imaged need not wait for it. */
  readTimeout?: string;
  /** More directives for the http block, as a frontend's own nginx.conf may have them (`gzip_types *;`). */
  http?: string;
  /** The http block's types instead of jpg, webp and avif: an older mime.types (nginx 1.18's has no avif). */
  types?: string;
}

/**
 * A real nginx (Debian's /usr/sbin/nginx) on a loopback port with the shipped
 * frontend config: `root` the frontend's folder, misses proxied to lis_imaged
 * at `upstream` (one port, or several: the upstream block lists them all).
 * Everything (config, pid, logs, temp folders) under `dir`;
 * `daemon off`, so the child is nginx's master and stop() ends it.
 */
export async function startNginx(
  dir: string,
  root: string,
  upstream: number | number[],
  options: NginxOptions = {},
): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  const servers = [upstream].flat().map((p) => `server 127.0.0.1:${p};`);
  let site = fs
    .readFileSync(path.join(ROOT, 'nginx/imagesys-frontend.conf'), 'utf8')
    .replaceAll('listen 80;', `listen 127.0.0.1:${port};`)
    .replaceAll('/var/www/thumbs', root)
    .replaceAll('server 127.0.0.1:8480;', servers.join('\n    '));
  if (options.readTimeout) site = site.replaceAll(/proxy_read_timeout \w+;/g, `proxy_read_timeout ${options.readTimeout};`);
  // Workers as the user running the test: the temp folders are private to it (as root, nginx would otherwise drop to nobody).
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  const conf = `daemon off;
${user}master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 256; }
http {
  types { ${options.types ?? 'image/jpeg jpg; image/webp webp; image/avif avif;'} }
  default_type application/octet-stream;
  gzip on; # as Debian's nginx.conf has it
  ${options.http ?? ''}
  access_log ${dir}/logs/access.log;
  client_body_temp_path ${dir}/client_body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
${site}
}
`;
  const confFile = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confFile, conf);
  const child = spawn('/usr/sbin/nginx', ['-p', dir, '-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  try {
    await waitForPort(port, 20_000, child);
  } catch (error) {
    await stopProcess(child);
    throw new Error(`nginx did not start: ${String(error)}\n${out}`, { cause: error });
  }
  return { url: `http://127.0.0.1:${port}`, stop: () => stopProcess(child) };
}
