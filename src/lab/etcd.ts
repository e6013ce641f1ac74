// A real etcd for cluster tests, demos and benchmarks (src/lab: local multi-node setups). Random free ports, a temp
// data dir, optionally inside a network namespace (`ip netns exec`), optionally
// TLS with certificates made by openssl into the temp dir; killed by process
// group in stop(). `startEtcdCluster(3)` starts a 3-member cluster for fault
// tests (stop/kill one member with member.stop()).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { pino } from "pino";
import { EtcdStore } from "../store/etcd.js";

export function etcdBinary(): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(":")) {
    const p = join(dir, "etcd");
    if (dir !== "" && existsSync(p)) return p;
  }
  return undefined;
}

/** For `describe(..., { skip: skipWithoutEtcd() })`. */
export function skipWithoutEtcd(): string | false {
  return etcdBinary() ? false : "the etcd binary is not installed (apt-get install etcd-server)";
}

/** Whether a TCP listener can bind `port` on loopback now (0: any port; resolves with the port bound). */
async function tryBind(port: number): Promise<number | undefined> {
  const srv = createServer();
  const bound = await new Promise<boolean>((r) => {
    srv.once("error", () => r(false));
    srv.listen(port, "127.0.0.1", () => r(true));
  });
  if (!bound) return undefined;
  const addr = srv.address();
  await new Promise<void>((r) => srv.close(() => r()));
  return addr === null || typeof addr === "string" ? undefined : addr.port;
}

/** The kernel's ephemeral port range (net.ipv4.ip_local_port_range), Linux's default when unreadable. */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
      .trim()
      .split(/\s+/)
      .map(Number);
    if (lo !== undefined && hi !== undefined && lo > 0 && hi >= lo) return [lo, hi];
  } catch {
    // not Linux: the default below
  }
  return [32768, 60999];
}

/**
 * A TCP port free on loopback for a server started next (etcd), picked at random OUTSIDE the kernel's
 * ephemeral range: a port from that range can become any outgoing connection's source port between
 * the check and the server's bind, or while the server is stopped for a restart (seen: a restarted
 * etcd failed with "address already in use" while other test files ran). Falls back to any port.
 */
export async function freePort(taken: Set<number> = new Set()): Promise<number> {
  const [lo, hi] = ephemeralRange();
  const [from, to] = lo - 1 >= 20_000 ? [10_000, lo - 1] : [hi + 1, 65_535];
  for (let i = 0; to > from && i < 50; i++) {
    const pick = from + Math.floor(Math.random() * (to - from + 1));
    if (taken.has(pick)) continue;
    const port = await tryBind(pick);
    if (port !== undefined) return take(taken, port);
  }
  for (let i = 0; i < 50; i++) {
    const any = await tryBind(0);
    if (any !== undefined && !taken.has(any)) return take(taken, any);
  }
  throw new Error("no free port on 127.0.0.1");
}

function take(taken: Set<number>, port: number): number {
  taken.add(port);
  return port;
}

export interface EtcdTls {
  /** PEM file paths (for agent flags --etcd-ca/--etcd-cert/--etcd-key). */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The same, read (for EtcdStoreParams.tls). */
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface EtcdOptions {
  /** Run etcd inside this network namespace (it must exist; `listenIp` must be an address there). */
  netns?: string;
  /** Address to listen on (default 127.0.0.1). */
  listenIp?: string;
  /** Serve clients over TLS (https) with a CA made for this etcd; `tls` then holds a client cert. */
  tls?: boolean;
  /** With tls: require client certificates (etcd --client-cert-auth). */
  clientCertAuth?: boolean;
}

export interface EtcdHandle {
  /** Client URL, e.g. http://127.0.0.1:40123 (https:// with tls). */
  readonly endpoint: string;
  readonly dataDir: string;
  /** With tls: CA + a client certificate (CN "root"). */
  readonly tls?: EtcdTls;
  /** Makes another client certificate signed by this etcd's CA (CN = name), with tls only. */
  clientCert(name: string): EtcdTls;
  /** A store on this etcd (prefix default "membrane/"); close it yourself. */
  store(opts?: { prefix?: string; auth?: { username: string; password: string } }): EtcdStore;
  stderr(): string;
  /** Kills etcd's process group and removes the data dir (safe to call twice). */
  stop(): Promise<void>;
}

const silent = pino({ level: "silent" });

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** A CA and a server certificate for `ips` in `dir` (ca.pem, ca.key, server.pem, server.key). */
export function makeCa(dir: string, ips: readonly string[]): void {
  openssl(
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=membrane-test-ca",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
    ],
    dir,
  );
  const san = ["DNS:localhost", ...ips.map((ip) => `IP:${ip}`)].join(",");
  writeFileSync(join(dir, "server.ext"), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl(
    [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      "/CN=etcd",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
    ],
    dir,
  );
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      "server.ext",
      "-out",
      "server.pem",
    ],
    dir,
  );
}

/** A client certificate (CN = name) signed by the CA in `dir`. */
export function makeClientCert(dir: string, name: string): EtcdTls {
  const base = `client-${name}`;
  writeFileSync(join(dir, `${base}.ext`), "extendedKeyUsage=clientAuth\n");
  openssl(
    [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      `/CN=${name}`,
      "-keyout",
      `${base}.key`,
      "-out",
      `${base}.csr`,
    ],
    dir,
  );
  openssl(
    [
      "x509",
      "-req",
      "-in",
      `${base}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      `${base}.ext`,
      "-out",
      `${base}.pem`,
    ],
    dir,
  );
  const caFile = join(dir, "ca.pem");
  const certFile = join(dir, `${base}.pem`);
  const keyFile = join(dir, `${base}.key`);
  return {
    caFile,
    certFile,
    keyFile,
    ca: readFileSync(caFile),
    cert: readFileSync(certFile),
    key: readFileSync(keyFile),
  };
}

interface Member {
  name: string;
  clientUrl: string;
  peerUrl: string;
}

function spawnMember(
  m: Member,
  initialCluster: string,
  dataDir: string,
  opts: EtcdOptions,
  certDir: string | undefined,
  token: string,
): { proc: ChildProcess; err: () => string } {
  const bin = etcdBinary() ?? "etcd";
  const args = [
    `--name=${m.name}`,
    `--data-dir=${join(dataDir, m.name)}`,
    `--listen-client-urls=${m.clientUrl}`,
    `--advertise-client-urls=${m.clientUrl}`,
    `--listen-peer-urls=${m.peerUrl}`,
    `--initial-advertise-peer-urls=${m.peerUrl}`,
    `--initial-cluster=${initialCluster}`,
    "--initial-cluster-state=new",
    `--initial-cluster-token=${token}`,
    "--log-level=error",
    "--logger=zap",
  ];
  if (certDir !== undefined) {
    args.push(
      `--cert-file=${join(certDir, "server.pem")}`,
      `--key-file=${join(certDir, "server.key")}`,
      `--trusted-ca-file=${join(certDir, "ca.pem")}`,
    );
    if (opts.clientCertAuth) args.push("--client-cert-auth");
  }
  const cmd = opts.netns ? "ip" : bin;
  const full = opts.netns ? ["netns", "exec", opts.netns, bin, ...args] : args;
  // detached: its own process group, so stop() kills `ip netns exec` and etcd together.
  const proc = spawn(cmd, full, { stdio: ["ignore", "ignore", "pipe"], detached: true });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => {
    if (stderr.length < 64 * 1024) stderr += d.toString();
  });
  return { proc, err: () => stderr };
}

async function killGroup(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
  const exited = new Promise((r) => proc.once("exit", r));
  try {
    process.kill(-proc.pid, "SIGKILL");
  } catch {
    proc.kill("SIGKILL");
  }
  await exited;
}

async function waitReady(store: () => EtcdStore, proc: ChildProcess, err: () => string): Promise<void> {
  const deadline = Date.now() + 30_000; // safety net
  for (;;) {
    const s = store();
    try {
      await s.revision();
      return;
    } catch (e) {
      if (Date.now() > deadline || proc.exitCode !== null) {
        throw new Error(`etcd did not start: ${(e as Error).message}\n${err()}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await s.close();
    }
  }
}

/** Starts one etcd; call stop() in `after`/finally. */
export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdHandle> {
  const [h] = await startMembers(1, opts);
  if (h === undefined) throw new Error("no etcd");
  return h;
}

/** Starts an n-member etcd cluster (each member's handle can be stopped alone); stop all in `after`. */
export async function startEtcdCluster(n: number, opts: EtcdOptions = {}): Promise<EtcdHandle[]> {
  return startMembers(n, opts);
}

async function startMembers(n: number, opts: EtcdOptions): Promise<EtcdHandle[]> {
  const ip = opts.listenIp ?? "127.0.0.1";
  const host = ip.includes(":") ? `[${ip}]` : ip;
  const dataDir = mkdtempSync(join(tmpdir(), "membrane-etcd-"));
  const scheme = opts.tls ? "https" : "http";
  let certDir: string | undefined;
  let rootTls: EtcdTls | undefined;
  if (opts.tls) {
    certDir = dataDir;
    makeCa(dataDir, [ip, "127.0.0.1"]);
    rootTls = makeClientCert(dataDir, "root");
  }
  const members: Member[] = [];
  // Each port free when picked, and none picked twice: nothing is bound between the picks (CI: two members
  // got the same peer port, and etcd refused the "duplicate url").
  const taken = new Set<number>();
  for (let i = 0; i < n; i++) {
    // Ports are picked on the host's loopback; inside a fresh namespace they are free too.
    members.push({
      name: `m${i}`,
      clientUrl: `${scheme}://${host}:${await freePort(taken)}`,
      peerUrl: `http://${host}:${await freePort(taken)}`,
    });
  }
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(",");
  const procs = members.map((m) => spawnMember(m, initialCluster, dataDir, opts, certDir, basename(dataDir)));
  let alive = n;
  const handles: EtcdHandle[] = members.map((m, i) => {
    const p = procs[i];
    if (p === undefined) throw new Error("no proc");
    let stopped = false;
    const store = (o?: { prefix?: string; auth?: { username: string; password: string } }): EtcdStore =>
      new EtcdStore({
        endpoints: [m.clientUrl],
        logger: silent,
        dialTimeoutMs: 2000,
        ...(o?.prefix !== undefined ? { prefix: o.prefix } : {}),
        ...(rootTls ? { tls: { ca: rootTls.ca, cert: rootTls.cert, key: rootTls.key } } : {}),
        ...(o?.auth ? { auth: o.auth } : {}),
      });
    return {
      endpoint: m.clientUrl,
      dataDir,
      ...(rootTls ? { tls: rootTls } : {}),
      clientCert: (name: string) => {
        if (certDir === undefined) throw new Error("clientCert needs { tls: true }");
        return makeClientCert(certDir, name);
      },
      store,
      stderr: p.err,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await killGroup(p.proc);
        if (--alive === 0) rmSync(dataDir, { recursive: true, force: true });
      },
    };
  });
  try {
    await Promise.all(handles.map((h, i) => waitReady(() => h.store(), procs[i]!.proc, h.stderr)));
  } catch (e) {
    for (const h of handles) await h.stop();
    throw e;
  }
  return handles;
}
