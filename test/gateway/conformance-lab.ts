/**
 * The lab the Gateway API conformance replays run in (root): the conformance
 * suite's world rebuilt with real namespaces and processes, every name
 * carrying the `m5c` prefix.
 *
 *   <p>-cl 10.232.3.2 --- 10.232.3.1 <p>-gw (the gateway process) 10.232.1.1 --- <p>-be
 *                                                                              10.232.1.11 infra-backend-v1
 *                                                                              10.232.1.12 infra-backend-v2
 *                                                                              10.232.1.13 infra-backend-v3
 *                                                                              10.232.1.21 app-backend-v1
 *                                                                              10.232.1.22 app-backend-v2
 *                                                                              10.232.1.31 web-backend
 *                                                                              10.232.1.4x grpc-infra-backend-vx
 *
 * One echo process serves every "pod" (HTTP/1.1 on 8080, h2c on 3001: each
 * Service's port 8081, appProtocol kubernetes.io/h2c, as in the suite): it tells them apart by the address the
 * connection came in on and answers with the request it saw as JSON (path with
 * query, host, method, headers, namespace, pod), as the suite's echo server
 * does; `X-Echo-Set-Header: Name:value,...` makes it add response fields,
 * `?delay=3s` (or 500ms) makes it wait that long before answering, and
 * each request is logged (pod, method, target) for the mirror cases.
 * apply() may give Gateways addresses of their own (10.232.4.x on the
 * gateway namespace), as the agent does from its LoadBalancer pool
 * (agent/gateway-addresses.ts); a request may name the address it goes to.
 * destroy() kills what it started (process group) and deletes the namespaces.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { GatewayCertificates } from "../../src/gateway/certs.js";
import { compileGateways, type ServicePortInfo } from "../../src/gateway/compile.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import type { GatewayInputs } from "../../src/gateway/protocol.js";
import { GatewayRunner } from "../../src/gateway/runner.js";
import type { Condition, StatusSet } from "../../src/gateway/status.js";
import { worldOf } from "../../src/gateway/world.js";
import { CLASS, gatewayYaml as gatewayIn } from "./fixtures.js";
import { grpcCalls, startGrpcServer, type GrpcAnswer } from "./grpc-lab.js";
import { killGroup } from "./netns-lab.js";

export const INFRA = "gateway-conformance-infra";
export const APP = "gateway-conformance-app-backend";
export const WEB = "gateway-conformance-web-backend";

/** Service -> pod address (one ready endpoint each). */
const PODS: Record<string, string> = {
  [`${INFRA}/infra-backend-v1`]: "10.232.1.11",
  [`${INFRA}/infra-backend-v2`]: "10.232.1.12",
  [`${INFRA}/infra-backend-v3`]: "10.232.1.13",
  [`${APP}/app-backend-v1`]: "10.232.1.21",
  [`${APP}/app-backend-v2`]: "10.232.1.22",
  [`${WEB}/web-backend`]: "10.232.1.31",
  // gRPC pods (startGrpc(): the suite's GrpcEcho on 3000; their Services' port 8080 is h2c).
  [`${INFRA}/grpc-infra-backend-v1`]: "10.232.1.41",
  [`${INFRA}/grpc-infra-backend-v2`]: "10.232.1.42",
  [`${INFRA}/grpc-infra-backend-v3`]: "10.232.1.43",
};

export const GW_ADDRESS = "10.232.3.1";

/** A Gateway of class membrane in the suite's infra namespace (fixtures.ts gatewayYaml). */
export function gatewayYaml(name: string, listeners: readonly string[]): string {
  return gatewayIn(name, listeners, { namespace: INFRA });
}

/** Our rendering of the suite's shared objects: the class, its Gateways (HTTP on 80 thrice, allowedRoutes Same/All/Selector). */
export const BASE =
  CLASS +
  gatewayYaml("same-namespace", [
    "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}",
  ]) +
  gatewayYaml("all-namespaces", [
    "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}",
  ]) +
  gatewayYaml("backend-namespaces", [
    "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gateway-conformance: backend}}}}}",
  ]);

const ECHO = `
const [log, map, port] = process.argv.slice(1);
const pods = JSON.parse(map);
const fs = require("fs");
// HTTP/1.1 on \`port\` (8080 here, 3000 in the suite); h2c (prior knowledge) on 3001, the
// suite's appProtocol kubernetes.io/h2c port.
// An h2c request logs "<pod> h2-conn <the gateway's port> <target>" as it arrives (which backend
// connection carried it), and "<pod> RESET <target> <code>" when its stream ends unanswered.
const handle = (h2) => (q, s) => {
  if (h2) {
    const pod = pods[q.socket.localAddress] || { pod: "?" };
    fs.appendFileSync(log, pod.pod + " h2-conn " + q.socket.remotePort + " " + q.url + "\\n");
    q.stream.on("close", () => {
      if (!s.writableEnded) fs.appendFileSync(log, pod.pod + " RESET " + q.url + " " + q.stream.rstCode + "\\n");
    });
  }
  q.on("data", () => undefined);
  // "?delay=3s" (or 500ms): the answer waits that long, as the suite's echo server does.
  const d = /[?&]delay=([0-9.]+)(ms|s|m)(&|$)/.exec(q.url);
  const wait = d ? Number(d[1]) * { ms: 1, s: 1000, m: 60000 }[d[2]] : 0;
  const later = (f) => (wait > 0 ? setTimeout(f, wait) : f());
  q.on("end", () => later(() => {
    if (h2 && q.stream.destroyed) return;
    const pod = pods[q.socket.localAddress] || { namespace: "?", pod: "?" };
    fs.appendFileSync(log, pod.pod + " " + q.method + " " + q.url + "\\n");
    const set = q.headers["x-echo-set-header"];
    if (set) for (const kv of String(set).split(",")) {
      const i = kv.indexOf(":");
      if (i > 0) s.setHeader(kv.slice(0, i), kv.slice(i + 1));
    }
    const headers = {};
    for (let i = 0; i < q.rawHeaders.length; i += 2) {
      const k = q.rawHeaders[i];
      headers[k] = headers[k] ? headers[k] + "," + q.rawHeaders[i + 1] : q.rawHeaders[i + 1];
    }
    s.setHeader("content-type", "application/json");
    s.end(JSON.stringify({ path: q.url, host: q.headers.host || q.headers[":authority"] || "", method: q.method, protocol: "HTTP/" + q.httpVersion, headers, namespace: pod.namespace, pod: pod.pod }));
  }));
};
require("http2").createServer(handle(true)).listen(3001, "0.0.0.0", () =>
  require("http").createServer(handle(false)).listen(Number(port), "0.0.0.0", () => console.log("ready")));`;

/**
 * The echo pods in namespace `ns` (detached: killGroup ends it): `pods` says which pod each local
 * address is; HTTP/1.1 on `port`, h2c on 3001; every request logged to `log`.
 */
export async function startEchoPods(
  ns: string,
  log: string,
  pods: Record<string, { namespace: string; pod: string }>,
  port = 8080,
): Promise<ChildProcess> {
  const c = spawn(
    "ip",
    ["netns", "exec", ns, process.execPath, "-e", ECHO, log, JSON.stringify(pods), String(port)],
    {
      detached: true,
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  await new Promise<void>((resolve, reject) => {
    c.stdout?.once("data", () => resolve());
    c.once("exit", (code) => reject(new Error(`echo exited ${code}`)));
  });
  return c;
}

const CLIENT = `
// HTTP/2 with prior knowledge (h2c), one session per request.
const h2 = (r) => new Promise((done) => {
  const c = require("http2").connect("http://" + r.address + ":" + r.port);
  c.on("error", (e) => done({ status: 0, error: e.code || e.message }));
  const q = c.request({ ":method": r.method || "GET", ":path": r.path, ":authority": r.host || r.address, ...(r.headers || {}) });
  let status = 0, headers = {}, b = "";
  q.on("response", (h) => { status = h[":status"]; headers = h; });
  q.on("data", (d) => (b += d));
  q.on("close", () => { c.close(); done(status ? { status, headers, body: b } : { status: 0, error: "stream " + q.rstCode }); });
  q.setTimeout(15000, () => q.close());
  q.end();
});
const one = (r) => r.h2 ? h2(r) : new Promise((done) => {
  const lib = r.tls ? require("https") : require("http");
  const headers = { ...(r.host ? { host: r.host } : {}), ...(r.headers || {}) };
  const q = lib.request({ host: r.address, port: r.port, method: r.method || "GET", path: r.path, headers, agent: false,
    ...(r.tls ? { rejectUnauthorized: false, servername: r.tls } : {}) }, (s) => {
    let b = ""; s.on("data", (d) => (b += d));
    s.on("end", () => done({ status: s.statusCode, headers: s.headers, body: b }));
  });
  q.on("error", (e) => done({ status: 0, error: e.code || e.message }));
  q.setTimeout(15000, () => q.destroy(new Error("timeout")));
  q.end();
});
// One batch per input line (a JSON list of requests), answered by one output line, in order.
let chain = Promise.resolve();
require("readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const reqs = JSON.parse(line);
  chain = chain.then(async () => {
    const out = [];
    for (let i = 0; i < reqs.length; i += 8) out.push(...(await Promise.all(reqs.slice(i, i + 8).map(one))));
    process.stdout.write(JSON.stringify(out) + "\\n");
  });
});
process.stdin.on("end", () => chain.then(() => process.exit(0)));
console.log("ready");`;

export interface Req {
  readonly path: string;
  readonly host?: string;
  readonly method?: string;
  readonly headers?: Record<string, string>;
  /** Gateway port (default 80). */
  readonly port?: number;
  /** HTTPS with this SNI name. */
  readonly tls?: string;
  /** HTTP/2 with prior knowledge (plain HTTP listeners only). */
  readonly h2?: boolean;
  /** The address it goes to (default GW_ADDRESS): a Gateway's own. */
  readonly address?: string;
}

export interface Seen {
  readonly path: string;
  readonly host: string;
  readonly method: string;
  /** "HTTP/1.1", "HTTP/2.0": how the request reached the pod. */
  readonly protocol: string;
  readonly headers: Record<string, string>;
  readonly namespace: string;
  readonly pod: string;
}

export interface Res {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly error?: string;
  /** What the backend saw (a 200 from an echo pod). */
  readonly seen?: Seen;
}

export class ConformanceLab {
  readonly prefix = "m5c" + randomBytes(2).toString("hex");
  readonly dir = mkdtempSync(join(tmpdir(), "m5c-"));
  readonly ns = { gw: `${this.prefix}-gw`, be: `${this.prefix}-be`, cl: `${this.prefix}-cl` };
  private readonly children: ChildProcess[] = [];
  private runner: GatewayRunner | undefined;
  private client: ChildProcess | undefined;
  private readonly answers: ((line: string) => void)[] = [];
  private resources: GatewayInputs["resources"] = [];
  /** `namespace/name` -> the Gateway's own addresses (apply's `own`). */
  private owned: Record<string, string[]> = {};
  readonly secrets = join(this.dir, "secrets");
  private readonly log = join(this.dir, "echo.log");

  static async start(): Promise<ConformanceLab> {
    const lab = new ConformanceLab();
    try {
      lab.build();
      await lab.echo();
      await lab.startClient();
      lab.runner = new GatewayRunner({ netns: lab.ns.gw, secretsDir: lab.secrets });
      lab.runner.start();
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  private ip(args: string[]): void {
    const r = spawnSync("ip", args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
  }

  private build(): void {
    mkdirSync(this.secrets, { recursive: true });
    for (const n of Object.values(this.ns)) this.ip(["netns", "add", n]);
    this.ip(["-n", this.ns.gw, "link", "set", "lo", "up"]);
    const peers: [string, number][] = [
      [this.ns.be, 1],
      [this.ns.cl, 3],
    ];
    for (const [ns, i] of peers) {
      this.ip([
        "-n",
        this.ns.gw,
        "link",
        "add",
        `v${i}`,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
      ]);
      this.ip(["-n", this.ns.gw, "addr", "add", `10.232.${i}.1/24`, "dev", `v${i}`]);
      this.ip(["-n", this.ns.gw, "link", "set", `v${i}`, "up"]);
      this.ip(["-n", ns, "addr", "add", `10.232.${i}.2/24`, "dev", "eth0"]);
      this.ip(["-n", ns, "link", "set", "lo", "up"]);
      this.ip(["-n", ns, "link", "set", "eth0", "up"]);
      this.ip(["-n", ns, "route", "add", "default", "via", `10.232.${i}.1`]);
    }
    for (const a of Object.values(PODS)) this.ip(["-n", this.ns.be, "addr", "add", `${a}/24`, "dev", "eth0"]);
  }

  private async echo(): Promise<void> {
    const pods: Record<string, { namespace: string; pod: string }> = {};
    for (const [svc, a] of Object.entries(PODS)) {
      const [namespace, name] = svc.split("/") as [string, string];
      pods[a] = { namespace, pod: `${name}-7c9f-${a.split(".")[3]}` };
    }
    this.children.push(await startEchoPods(this.ns.be, this.log, pods));
  }

  /** The client process in the client namespace: batches of requests in, answers out, one line each. */
  private async startClient(): Promise<void> {
    const c = spawn("ip", ["netns", "exec", this.ns.cl, process.execPath, "-e", CLIENT], {
      detached: true,
      stdio: ["pipe", "pipe", "inherit"],
    });
    this.children.push(c);
    this.client = c;
    const lines = createInterface({ input: c.stdout as NodeJS.ReadableStream });
    await new Promise<void>((resolve, reject) => {
      lines.once("line", () => resolve());
      c.once("exit", (code) => reject(new Error(`client exited ${code}`)));
    });
    lines.on("line", (l) => this.answers.shift()?.(l));
    c.once("exit", (code) => {
      for (const a of this.answers.splice(0)) a(JSON.stringify({ exited: code }));
    });
  }

  /** A self-signed certificate for `hosts` as Secret `ns/name` (tls.crt, tls.key). */
  certificate(ns: string, name: string, hosts: string[]): void {
    const d = join(this.secrets, ns, name);
    mkdirSync(d, { recursive: true });
    const san = hosts.map((h) => `DNS:${h}`).join(",");
    const r = spawnSync(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", `/CN=${hosts[0] ?? "x"}`, "-addext", `subjectAltName=${san}`,
        "-keyout", join(d, "tls.key"), "-out", join(d, "tls.crt")], // prettier-ignore
      { encoding: "utf8" },
    );
    if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  }

  inputs(): GatewayInputs {
    const services: Record<string, string[]> = {};
    // As the suite's Services: port 8080 HTTP/1.1, 8081 appProtocol kubernetes.io/h2c to 3001.
    const servicePorts: Record<string, Record<string, ServicePortInfo>> = {};
    // The gRPC ones: port 8080, appProtocol kubernetes.io/h2c, to 3000.
    for (const [k, a] of Object.entries(PODS)) {
      services[k] = [a];
      servicePorts[k] = k.startsWith(`${INFRA}/grpc-`)
        ? { "8080": { appProtocol: "kubernetes.io/h2c", targetPort: 3000 } }
        : { "8081": { appProtocol: "kubernetes.io/h2c", targetPort: 3001 } };
    }
    return {
      resources: this.resources,
      services,
      servicePorts,
      namespaceLabels: {
        [INFRA]: { "gateway-conformance": "infra" },
        [APP]: { "gateway-conformance": "backend" },
        [WEB]: { "gateway-conformance": "backend" },
      },
      addresses: [GW_ADDRESS],
      ...(Object.keys(this.owned).length > 0 ? { gatewayAddresses: this.owned } : {}),
    };
  }

  /**
   * Replaces the resources with BASE + `yaml` and waits until the gateway process serves them;
   * `own`: Gateway name (in INFRA) -> an address of its own (10.232.4.x), as the agent gives one.
   */
  async apply(yaml: string, own: Record<string, string> = {}): Promise<void> {
    for (const a of Object.values(own))
      this.ip(["-n", this.ns.gw, "addr", "replace", `${a}/32`, "dev", "lo"]);
    this.owned = Object.fromEntries(Object.entries(own).map(([g, a]) => [`${INFRA}/${g}`, [a]]));
    this.resources = parseGatewayResources(`${BASE}---\n${yaml}`, "conformance.yaml");
    const r = await (this.runner as GatewayRunner).push(this.inputs());
    if (r.error !== undefined) throw new Error(`gateway: ${r.error}`);
  }

  /** The status `membrane get ... -o yaml` shows (the function the agent's list() calls). */
  status(): StatusSet {
    return compileGateways(worldOf(this.inputs(), new GatewayCertificates(this.secrets), "now")).status;
  }

  /** The conditions of route `ns/name` for its parent Gateway `gw` (in INFRA). */
  routeConditions(route: string, gw: string): readonly Condition[] | undefined {
    const st = this.status().routes.get(`HTTPRoute/${route}`);
    return st?.parents.find((p) => p.parentRef.name === gw)?.conditions;
  }

  /** Requests from the client namespace, to the gateway address (in order, 8 at a time). */
  async send(reqs: readonly Req[]): Promise<Res[]> {
    const wire = reqs.map((r) => ({
      ...r,
      address: r.address ?? GW_ADDRESS,
      port: r.port ?? (r.tls ? 443 : 80),
    }));
    const line = await new Promise<string>((resolve) => {
      this.answers.push(resolve);
      this.client?.stdin?.write(JSON.stringify(wire) + "\n");
    });
    const got = JSON.parse(line) as Res[] | { exited: number };
    if (!Array.isArray(got)) throw new Error(`the client process exited (${got.exited})`);
    return got.map((x) => {
      if (x.status !== 200) return x;
      try {
        return { ...x, seen: JSON.parse(x.body) as Seen };
      } catch {
        return x;
      }
    });
  }

  /** The gRPC pods: the suite's GrpcEcho service on <pod address>:3000, each named as its pod. */
  async startGrpc(): Promise<void> {
    for (const [svc, a] of Object.entries(PODS)) {
      const name = svc.split("/")[1] ?? "";
      if (name.startsWith("grpc-"))
        this.children.push(await startGrpcServer(this.ns.be, `${name}-7c9f-${a.split(".")[3]}`, `${a}:3000`));
    }
  }

  /** `n` unary gRPC calls of `method` on one channel from the client namespace, to the gateway (port 80). */
  grpc(
    method: string,
    n = 1,
    o: { authority?: string; metadata?: Record<string, string>; address?: string } = {},
  ): GrpcAnswer[] {
    const { address, ...rest } = o;
    return grpcCalls(this.ns.cl, `${address ?? GW_ADDRESS}:80`, method, n, rest);
  }

  /** Log lines `pod method target` of every request the echo pods answered. */
  echoLog(): string[] {
    try {
      return readFileSync(this.log, "utf8").split("\n").filter(Boolean);
    } catch {
      return [];
    }
  }

  async destroy(): Promise<void> {
    this.client?.stdin?.end();
    await this.runner?.stop();
    for (const c of this.children) killGroup(c);
    for (const n of Object.values(this.ns)) spawnSync("ip", ["netns", "del", n]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
