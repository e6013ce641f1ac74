/**
 * Keep-alive connections opened before an L7 rule (needs root).
 *
 *   client (app: client) ──┐                      web (app: web): HTTP on 80, 8080, 9090
 *   other  (app: other)  ──┼── node netns ──────>
 *   ec     (app: ec)     ──┘   proxy 10.213.0.1:15001
 *
 * A connection established under an L3/L4 allow is accepted as "ct state
 * established" and never passes the redirect again. When an apply adds a
 * redirect that covers it, the agent resets it (the endpoint's socket is
 * destroyed, which sends the peer a RST, and its conntrack entry is deleted),
 * so the client sees ECONNRESET and its next connection goes through the
 * proxy. Connections of other peers, ports and endpoints are left alone.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { AgentLab, rootSkipReason } from "./harness.js";

const skip = rootSkipReason();

/** The keep-alive client (keepalive-client.ts) in one namespace. */
class KeepAliveClient {
  private seq = 0;
  private buf = "";
  private readonly waiting = new Map<number, (v: string) => void>();
  private readonly proc: ChildProcessWithoutNullStreams;

  constructor(netns: string) {
    const script = fileURLToPath(new URL("./keepalive-client.js", import.meta.url));
    this.proc = spawn("ip", ["netns", "exec", netns, process.execPath, script]);
    this.proc.stdout.on("data", (d: Buffer) => {
      this.buf += d.toString("utf8");
      let i: number;
      while ((i = this.buf.indexOf("\n")) >= 0) {
        const msg = JSON.parse(this.buf.slice(0, i)) as { seq: number; result: string };
        this.buf = this.buf.slice(i + 1);
        this.waiting.get(msg.seq)?.(msg.result);
        this.waiting.delete(msg.seq);
      }
    });
  }

  private request(cmd: Record<string, unknown>): Promise<string> {
    const seq = ++this.seq;
    return new Promise((resolve) => {
      this.waiting.set(seq, resolve);
      this.proc.stdin.write(JSON.stringify({ ...cmd, seq }) + "\n");
    });
  }

  open(id: string, host: string, port: number): Promise<string> {
    return this.request({ op: "open", id, host, port, timeoutMs: 2000 });
  }
  get(id: string, path: string): Promise<string> {
    return this.request({ op: "get", id, path, timeoutMs: 3000 });
  }
  state(id: string): Promise<string> {
    return this.request({ op: "state", id });
  }
  stop(): void {
    this.proc.stdin.end();
    this.proc.kill();
  }
}

const cnp = (name: string, spec: string): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
${spec
  .trim()
  .split("\n")
  .map((l) => "  " + l)
  .join("\n")}
`;

const WEB_L4 = cnp(
  "web",
  `
endpointSelector: {matchLabels: {app: web}}
ingress:
- fromEndpoints: [{matchLabels: {app: client}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}, {port: "8080", protocol: TCP}]}]
- fromEndpoints: [{matchLabels: {app: other}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]
- fromEndpoints: [{matchLabels: {app: ec}}]
  toPorts: [{ports: [{port: "9090", protocol: TCP}, {port: "8080", protocol: TCP}]}]
`,
);

/** The same policy with HTTP rules for the client on port 80 only. */
const WEB_L7 = cnp(
  "web",
  `
endpointSelector: {matchLabels: {app: web}}
ingress:
- fromEndpoints: [{matchLabels: {app: client}}]
  toPorts:
  - ports: [{port: "80", protocol: TCP}]
    rules:
      http:
      - method: GET
        path: /public/.*
- fromEndpoints: [{matchLabels: {app: client}}]
  toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
- fromEndpoints: [{matchLabels: {app: other}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]
- fromEndpoints: [{matchLabels: {app: ec}}]
  toPorts: [{ports: [{port: "9090", protocol: TCP}, {port: "8080", protocol: TCP}]}]
`,
);

const EC_L4 = cnp(
  "ec",
  `
endpointSelector: {matchLabels: {app: ec}}
egress:
- toEndpoints: [{matchLabels: {app: web}}]
  toPorts: [{ports: [{port: "9090", protocol: TCP}, {port: "8080", protocol: TCP}]}]
`,
);

const EC_L7 = cnp(
  "ec",
  `
endpointSelector: {matchLabels: {app: ec}}
egress:
- toEndpoints: [{matchLabels: {app: web}}]
  toPorts:
  - ports: [{port: "9090", protocol: TCP}]
    rules:
      http:
      - method: GET
        path: /public/.*
- toEndpoints: [{matchLabels: {app: web}}]
  toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`,
);

const webHost = (hostRules: string): string =>
  cnp(
    "web",
    `
endpointSelector: {matchLabels: {app: web}}
ingress:
- fromEndpoints: [{matchLabels: {app: client}}]
  toPorts:
  - ports: [{port: "80", protocol: TCP}]
    rules:
      http:
      - method: GET
        path: /public/.*
- fromEntities: [host]
  toPorts:
  - ports: [{port: "80", protocol: TCP}]
${hostRules}
`,
  );

/** The node may reach web:80 at L3/L4; the client only through HTTP rules. */
const WEB_HOST_L4 = webHost("");
/** The same with HTTP rules for the node too. */
const WEB_HOST_L7 = webHost(`    rules:
      http:
      - method: GET
        path: /public/.*`);

describe(
  "agent e2e: keep-alive connections opened before an L7 rule (ka, root)",
  { skip: skip ?? false },
  () => {
    let lab: AgentLab;
    const clients = new Map<string, KeepAliveClient>();
    const ka = (name: string): KeepAliveClient => {
      let c = clients.get(name);
      if (!c) {
        c = new KeepAliveClient(name === "node" ? lab.node : lab.ep(name).view.netns);
        clients.set(name, c);
      }
      return c;
    };
    const web = (): string => lab.ep("web").ip;
    const web6 = (): string => lab.ep("web").view.ipv6 ?? "";

    before(async () => {
      lab = await AgentLab.start("ka", {
        podCidr4: "10.213.0.0/24",
        podCidr6: "fd00:213::/64",
        proxy: true,
      });
      await lab.endpoint("web", { app: "web" });
      for (const name of ["client", "other", "ec"]) await lab.endpoint(name, { app: name });
      for (const port of [80, 8080, 9090]) await lab.ep("web").probe.listenHttp(port);
    });
    after(async () => {
      for (const c of clients.values()) c.stop();
      await lab?.destroy();
    });

    test("ingress: an L7 rule added on a port resets that peer's open connections there; the next one is proxied; other peers and ports keep theirs", async () => {
      await lab.agent.applyPolicies(WEB_L4, "web.yaml");
      await lab.agent.applyPolicies(EC_L4, "ec.yaml");
      assert.equal(await ka("client").open("c80", web(), 80), "ok");
      assert.equal(await ka("client").open("c80v6", web6(), 80), "ok");
      assert.equal(await ka("client").open("c8080", web(), 8080), "ok");
      assert.equal(await ka("other").open("o80", web(), 80), "ok");
      assert.deepEqual(
        [
          await ka("client").get("c80", "/private"),
          await ka("client").get("c80v6", "/private"),
          await ka("client").get("c8080", "/private"),
          await ka("other").get("o80", "/private"),
        ],
        ["200", "200", "200", "200"],
        "allowed at L3/L4 before the L7 rule",
      );

      await lab.agent.applyPolicies(WEB_L7, "web.yaml");

      const old = await ka("client").get("c80", "/private");
      assert.notEqual(old, "200", "the old connection must not reach the backend any more");
      assert.equal(old, "ECONNRESET", "the client sees a reset, not a hang");
      assert.equal(await ka("client").get("c80v6", "/private"), "ECONNRESET", "IPv6 alike");
      assert.equal(await ka("client").open("n80", web(), 80), "ok");
      assert.deepEqual(
        [await ka("client").get("n80", "/private"), await ka("client").get("n80", "/public/x")],
        ["403", "200"],
        "a new connection goes through the proxy",
      );
      assert.deepEqual(
        [await ka("client").get("c8080", "/private"), await ka("other").get("o80", "/private")],
        ["200", "200"],
        "another port of the same peer, and another peer on the same port, keep their connections",
      );
    });

    test("egress: an L7 rule added on the client's egress resets its open connection to that port only", async () => {
      assert.equal(await ka("ec").open("e9090", web(), 9090), "ok");
      assert.equal(await ka("ec").open("e8080", web(), 8080), "ok");
      assert.deepEqual(
        [await ka("ec").get("e9090", "/private"), await ka("ec").get("e8080", "/private")],
        ["200", "200"],
      );

      await lab.agent.applyPolicies(EC_L7, "ec.yaml");

      const old = await ka("ec").get("e9090", "/private");
      assert.notEqual(old, "200", "the old connection must not reach the backend any more");
      assert.equal(old, "ECONNABORTED", "the endpoint's own socket was destroyed: it fails at once");
      assert.equal(await ka("ec").open("n9090", web(), 9090), "ok");
      assert.deepEqual(
        [await ka("ec").get("n9090", "/private"), await ka("ec").get("e8080", "/private")],
        ["403", "200"],
        "a new connection is proxied; the connection to the other port lives on",
      );
    });

    test("removing the L7 rule: the proxy resets a proxied connection at its next request (no L7 policy for it any more); the next connection goes direct", async () => {
      assert.equal(await ka("client").open("p80", web(), 80), "ok");
      assert.equal(await ka("client").get("p80", "/private"), "403", "proxied");
      await lab.agent.applyPolicies(WEB_L4, "web.yaml");
      assert.equal(await ka("client").get("p80", "/private"), "ECONNRESET", "never forwarded unjudged");
      assert.equal(await ka("client").open("d80", web(), 80), "ok");
      assert.equal(await ka("client").get("d80", "/private"), "200", "not redirected any more");
    });

    test("the agent logs what it reset: each covered connection (IPv4 and IPv6) once, its socket and entry once", () => {
      const resets = lab.logs.filter((l) => l["msg"] === "reset connections that bypassed a new L7 redirect");
      assert.deepEqual(
        resets.map((l) => [l["connections"], l["socketsDestroyed"], l["entriesDeleted"]]),
        [
          [2, 2, 2],
          [1, 1, 1],
        ],
      );
    });

    test("the node's own connection is reset when an L7 rule for host is added; the proxy's upstream connections are not", async () => {
      await lab.agent.applyPolicies(WEB_HOST_L4, "web.yaml");
      assert.equal(await ka("client").open("q80", web(), 80), "ok");
      assert.equal(await ka("client").get("q80", "/public/x"), "200", "proxied: the proxy holds an upstream");
      assert.equal(await ka("node").open("h80", web(), 80), "ok");
      assert.equal(await ka("node").get("h80", "/private"), "200", "the node, at L3/L4");
      const before = lab.logs.length;

      await lab.agent.applyPolicies(WEB_HOST_L7, "web.yaml");

      assert.equal(await ka("node").get("h80", "/private"), "ECONNRESET");
      assert.equal(await ka("node").open("h80b", web(), 80), "ok");
      assert.equal(await ka("node").get("h80b", "/private"), "403", "the node's next connection is proxied");
      assert.equal(await ka("client").get("q80", "/public/x"), "200", "the proxied connection lives on");
      const resets = lab.logs
        .slice(before)
        .filter((l) => l["msg"] === "reset connections that bypassed a new L7 redirect");
      assert.deepEqual(
        resets.map((l) => l["connections"]),
        [1],
        "the node's connection only, not the proxy's upstream one to the same port",
      );
    });
  },
);
