/**
 * A small real network for the gateway tests (root): namespaces `<prefix>-gw`
 * (the gateway), `<prefix>-b1`/`-b2` (echo backends) and `<prefix>-cl` (the
 * outside client), veths from the gateway namespace to each, every name
 * carrying the `hgw` prefix; destroy() kills what it started (by process
 * group) and deletes the namespaces.
 *
 *   cl 10.231.3.2 --- 10.231.3.1 gw 10.231.1.1 --- 10.231.1.2 b1
 *                                   10.231.2.1 --- 10.231.2.2 b2
 *
 * With `ipv6`, every link is dual-stack (fd00:231:<i>::1/64 on the gateway's side,
 * ::2 on the other, no duplicate address detection) and the backends listen on both.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ECHO = `
const name = process.argv[1];
const host = process.argv[2] || "0.0.0.0";
require("http").createServer((q, s) => {
  let n = 0; q.on("data", (d) => (n += d.length));
  q.on("end", () => {
    s.setHeader("x-backend", name);
    s.setHeader("x-from-backend", "orig");
    s.end(JSON.stringify({ backend: name, method: q.method, url: q.url, headers: q.headers, body: n, peer: q.socket.remoteAddress }));
  });
}).listen(8080, host, () => console.log("ready"));`;

const CLIENT = `
const [url, n, hdrs, insecureHost] = process.argv.slice(1);
const lib = url.startsWith("https") ? require("https") : require("http");
const agent = new lib.Agent({ keepAlive: true, maxSockets: 1 });
const out = [];
let i = 0;
const one = () => {
  if (i++ >= Number(n)) { agent.destroy(); console.log(JSON.stringify(out)); return; }
  const opts = { agent, headers: JSON.parse(hdrs), ...(insecureHost ? { rejectUnauthorized: false, servername: insecureHost } : {}) };
  const q = lib.get(url, opts, (s) => {
    let b = ""; s.on("data", (d) => (b += d));
    s.on("end", () => { out.push({ status: s.statusCode, headers: s.headers, body: b }); one(); });
  });
  q.on("error", (e) => { out.push({ status: 0, error: e.code || e.message }); one(); });
  q.setTimeout(12000, () => q.destroy(new Error("timeout")));
};
one();`;

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  error?: string;
}

/** An HTTP echo server on port 8080 in `ns` (its own process group: kill -pid); IPv4 unless `host` says ("::"). */
export function startEcho(ns: string, name: string, host = "0.0.0.0"): Promise<ChildProcess> {
  const c = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", ECHO, name, host], {
    detached: true,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    c.stdout?.once("data", () => resolve(c));
    c.once("exit", (code) => reject(new Error(`echo backend ${name} exited ${code}`)));
  });
}

export function killGroup(c: ChildProcess): void {
  try {
    if (c.pid !== undefined) process.kill(-c.pid, "SIGKILL");
  } catch {
    // gone
  }
}

/** `n` requests on one keep-alive connection, made from namespace `ns`. */
export function httpGet(
  ns: string,
  url: string,
  n = 1,
  headers: Record<string, string> = {},
  tlsName?: string,
): Answer[] {
  const r = spawnSync(
    "ip",
    [
      "netns",
      "exec",
      ns,
      process.execPath,
      "-e",
      CLIENT,
      url,
      String(n),
      JSON.stringify(headers),
      tlsName ?? "",
    ],
    {
      encoding: "utf8",
      timeout: 60_000,
    },
  );
  if (r.status !== 0) throw new Error(`client: ${r.stderr}`);
  return JSON.parse(r.stdout) as Answer[];
}

/** `ip ARGS`; a failure throws with ip's own words. */
/** The child process of h2Get: one HTTP/2 prior-knowledge GET, its head and body (or the error) as JSON. */
const H2_GET = `
const http2 = require("http2");
const s = http2.connect(process.argv[1]);
s.on("error", (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(0); });
const q = s.request({ ":path": process.argv[2] });
q.setTimeout(12000, () => { console.log(JSON.stringify({ error: "timeout" })); process.exit(0); });
let head = {}, body = "";
q.on("response", (h) => (head = h));
q.on("data", (d) => (body += d));
q.on("end", () => { console.log(JSON.stringify({ head, body })); s.close(); });`;

export interface H2Answer {
  readonly head?: Record<string, string | number>;
  readonly body?: string;
  readonly error?: string;
  /** The child's stderr, for assertion messages. */
  readonly stderr: string;
}

/** An HTTP/2 prior-knowledge GET of `path` on `base` (http://host:port) from namespace `ns`. */
export function h2Get(ns: string, base: string, path: string): H2Answer {
  const r = spawnSync("ip", ["netns", "exec", ns, process.execPath, "-e", H2_GET, base, path], {
    encoding: "utf8",
    timeout: 20_000,
  });
  return { ...(JSON.parse(r.stdout.trim() || "{}") as Omit<H2Answer, "stderr">), stderr: r.stderr };
}

export function ip(args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

/**
 * A gateway lab's namespaces (this file's GatewayLab, conformance-lab.ts): `gw` and each peer,
 * a veth from `gw`'s `v<i>` to the peer's `eth0`, the peer at 10.<net>.<i>.2/24 with its default
 * route via 10.<net>.<i>.1 on `gw` (with `ipv6` also fd00:<net>:<i>::2/64 via ::1, no duplicate
 * address detection). The caller deletes the namespaces.
 */
export function buildStar(gw: string, peers: readonly [string, number][], net: number, ipv6 = false): void {
  for (const n of [gw, ...peers.map(([ns]) => ns)]) ip(["netns", "add", n]);
  ip(["-n", gw, "link", "set", "lo", "up"]);
  for (const [ns, i] of peers) {
    ip(["-n", gw, "link", "add", `v${i}`, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    ip(["-n", gw, "addr", "add", `10.${net}.${i}.1/24`, "dev", `v${i}`]);
    ip(["-n", gw, "link", "set", `v${i}`, "up"]);
    ip(["-n", ns, "addr", "add", `10.${net}.${i}.2/24`, "dev", "eth0"]);
    ip(["-n", ns, "link", "set", "lo", "up"]);
    ip(["-n", ns, "link", "set", "eth0", "up"]);
    ip(["-n", ns, "route", "add", "default", "via", `10.${net}.${i}.1`]);
    if (!ipv6) continue;
    ip(["-n", gw, "addr", "add", `fd00:${net}:${i}::1/64`, "dev", `v${i}`, "nodad"]);
    ip(["-n", ns, "addr", "add", `fd00:${net}:${i}::2/64`, "dev", "eth0", "nodad"]);
    ip(["-n", ns, "-6", "route", "add", "default", "via", `fd00:${net}:${i}::1`]);
  }
}

export class GatewayLab {
  readonly prefix = "hgw" + randomBytes(3).toString("hex").slice(0, 5);
  readonly dir = mkdtempSync(join(tmpdir(), "hgw-"));
  private readonly children: ChildProcess[] = [];
  readonly ns = {
    gw: `${this.prefix}-gw`,
    b1: `${this.prefix}-b1`,
    b2: `${this.prefix}-b2`,
    cl: `${this.prefix}-cl`,
  };

  private constructor(private readonly ipv6: boolean) {}

  static async start(o: { ipv6?: boolean } = {}): Promise<GatewayLab> {
    const lab = new GatewayLab(o.ipv6 === true);
    try {
      lab.build();
      await Promise.all([lab.echo("b1", lab.ns.b1), lab.echo("b2", lab.ns.b2)]);
    } catch (e) {
      lab.destroy();
      throw e;
    }
    return lab;
  }

  private build(): void {
    const { gw, b1, b2, cl } = this.ns;
    buildStar(gw, [[b1, 1], [b2, 2], [cl, 3]], 231, this.ipv6); // prettier-ignore
  }

  private async echo(name: string, ns: string): Promise<void> {
    this.children.push(await startEcho(ns, name, this.ipv6 ? "::" : "0.0.0.0"));
  }

  /** `n` requests on one keep-alive connection from the client namespace. */
  get(url: string, n = 1, headers: Record<string, string> = {}, tlsName?: string): Answer[] {
    return httpGet(this.ns.cl, url, n, headers, tlsName);
  }

  /** A self-signed certificate for `host` in `<dir>/secrets/<ns>/<name>/`. */
  certificate(ns: string, name: string, host: string): string {
    const d = join(this.dir, "secrets", ns, name);
    spawnSync("mkdir", ["-p", d]);
    const r = spawnSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        `/CN=${host}`,
        "-addext",
        `subjectAltName=DNS:${host}`,
        "-keyout",
        join(d, "tls.key"),
        "-out",
        join(d, "tls.crt"),
      ],
      { encoding: "utf8" },
    );
    if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
    return join(this.dir, "secrets");
  }

  writeFile(name: string, text: string): string {
    const p = join(this.dir, name);
    writeFileSync(p, text);
    return p;
  }

  destroy(): void {
    for (const c of this.children) killGroup(c);
    for (const n of Object.values(this.ns)) spawnSync("ip", ["netns", "del", n]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
