/**
 * A private nginx reverse proxy for the proxy benchmark: Debian's nginx
 * binary, our own config, pid, logs and temp paths in a fresh temp dir,
 * listening on a loopback port we picked. The system's nginx (/etc/nginx,
 * its service, its ports) is never touched.
 *
 *   nginx -c <dir>/nginx.conf -p <dir> -g 'daemon off;'   (a child process)
 *   client --127.0.0.1:port--> nginx --keepalive pool--> upstream 127.0.0.1:upPort
 *
 * `workers` is worker_processes: 1 (the fair comparison with Membrane's
 * single-threaded proxy) or "auto" (one per CPU).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childPids } from "./proxy-procs.js";

export interface Nginx {
  readonly port: number;
  readonly version: string;
  /** The worker processes (the ones doing the proxying). */
  workerPids(): number[];
  stop(): Promise<void>;
}

const NGINX_CANDIDATES = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"];

/** The nginx binary and its version, or undefined when it is not installed. */
export function findNginx(): { bin: string; version: string } | undefined {
  for (const bin of NGINX_CANDIDATES) {
    const r = spawnSync(bin, ["-v"], { encoding: "utf8" });
    if (r.status === 0)
      return { bin, version: (r.stderr || r.stdout).trim().replace(/^nginx version: /, "") };
  }
  return undefined;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The default server: every path to the upstream (the proxy benchmark). */
export const PASS_ALL = `location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }`;

function config(dir: string, workers: 1 | "auto", port: number, upPort: number, server: string): string {
  return `worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  upstream bench_upstream {
    server 127.0.0.1:${upPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    ${server}
  }
}
`;
}

async function waitListening(port: number, child: ChildProcess, dir: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        r(true);
      });
      s.once("error", () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  let log = "";
  try {
    log = readFileSync(join(dir, "error.log"), "utf8").trim();
  } catch {
    // no log written
  }
  throw new Error(`Cannot start nginx on 127.0.0.1:${port}: it did not listen within 5 s. ${log}`);
}

export async function startNginx(p: {
  bin: string;
  version: string;
  workers: 1 | "auto";
  upstreamPort: number;
  /** The server block's body after `listen` (locations; the upstream is `bench_upstream`). */
  server?: string;
}): Promise<Nginx> {
  const dir = mkdtempSync(join(tmpdir(), "membrane-bench-nginx-"));
  chmodSync(dir, 0o755); // workers run as an unprivileged user when we are root
  const port = await freePort();
  writeFileSync(join(dir, "nginx.conf"), config(dir, p.workers, port, p.upstreamPort, p.server ?? PASS_ALL));
  const child = spawn(p.bin, ["-c", join(dir, "nginx.conf"), "-p", dir, "-g", "daemon off;"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const pid = child.pid ?? 0;
  const stop = async (): Promise<void> => {
    const workers = childPids(pid);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM"); // fast shutdown: the master stops its workers
      const t = setTimeout(() => {
        for (const w of workers) tryKill(w);
        child.kill("SIGKILL");
      }, 3000);
      await exited;
      clearTimeout(t);
    }
    for (const w of workers) tryKill(w); // a worker orphaned by a killed master
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitListening(port, child, dir);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, version: p.version, workerPids: () => childPids(pid), stop };
}

/** Kills `pid` only if it still is an nginx worker (a pid can be reused once it ended). */
function tryKill(pid: number): void {
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, "latin1").startsWith("nginx: worker")) return;
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}
