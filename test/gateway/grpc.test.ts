/**
 * HTTP/2 and GRPCRoute through the gateway process, in real namespaces
 * (root): a @grpc/grpc-js client in the outside namespace calls gRPC servers
 * in two backend namespaces through the gateway (h2c prior knowledge on the
 * HTTP listener, ALPN h2 on the HTTPS one). Routing by method, weights,
 * per-request balancing of one connection's calls over a Service's two
 * endpoints, header filters, trailers and non-OK statuses passed through,
 * UNAVAILABLE for a missing backend, UNIMPLEMENTED for no route, and an
 * HTTP/2 client routed by an HTTPRoute to an HTTP/1.1 backend.
 */
import assert from "node:assert/strict";
import { spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { GatewayEvent } from "../../src/gateway/exchange.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import type { GatewayInputs } from "../../src/gateway/protocol.js";
import { GatewayRunner } from "../../src/gateway/runner.js";
import { CLASS, gatewayYaml } from "./fixtures.js";
import { grpcCalls, startGrpcServer, startH2Echo } from "./grpc-lab.js";
import { GatewayLab, h2Get, killGroup } from "./netns-lab.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces)" : false;

const YAML = `${CLASS}${gatewayYaml(
  "gw",
  [
    "{name: http, port: 80, protocol: HTTP}",
    "{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: good}]}}",
  ],
  { namespace: "app" },
)}---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{method: {service: demo.Other}}]
    backendRefs: [{name: g2, port: 9090}]
  - matches: [{method: {service: demo.Echo, method: Echo}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-added, value: by-gateway}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-resp, value: r}]}}
    backendRefs: [{name: both, port: 9090}]
  - matches: [{method: {type: RegularExpression, service: "demo\\\\.Echo", method: "W.*"}}]
    backendRefs: [{name: g1, port: 9090, weight: 3}, {name: g2, port: 9090, weight: 1}]
  - matches: [{method: {service: demo.Echo, method: Fail}}]
    backendRefs: [{name: both, port: 9090}]
  - matches: [{method: {service: demo.Missing}}]
    backendRefs: [{name: nothere, port: 9090}]
  - matches: [{method: {service: demo.Mirror}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: g1, port: 9090}}}]
    backendRefs: [{name: g2, port: 9090}]
  - matches: [{method: {service: demo.Stats}, headers: [{name: x-to, value: g1}]}]
    backendRefs: [{name: g1, port: 9090}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /h2}}]
    filters:
    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-added, value: r}]}}
    backendRefs: [{name: h2echo, port: 9091}]
  - matches: [{path: {type: PathPrefix, value: /web}}]
    filters:
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-from-backend, value: changed}]}}
    backendRefs: [{name: v1, port: 8080}]
`;

/**
 * HTTP/2 rapid reset (CVE-2023-44487): 5,000 streams opened and cancelled at once on one
 * connection, then 300 more streams left open (above the 128 the gateway offers).
 * Prints what the session saw.
 */
const H2_FLOOD = `
const http2 = require("http2");
const s = http2.connect(process.argv[1]);
let goaway = null, refused = 0;
s.on("goaway", (code) => (goaway = code));
s.on("error", () => {});
for (let i = 0; i < 5000 && !s.destroyed; i++) {
  try { const q = s.request({ ":path": "/web/reset" }); q.on("error", () => {}); q.close(http2.constants.NGHTTP2_CANCEL); } catch { break; }
}
for (let i = 0; i < 300 && !s.destroyed; i++) {
  try { const q = s.request({ ":path": "/web/open", ":method": "POST" }); q.on("error", () => refused++); } catch { break; }
}
setTimeout(() => { console.log(JSON.stringify({ goaway, refused })); process.exit(0); }, 1500);`;

describe("gateway HTTP/2 and GRPCRoute in namespaces (root)", { skip }, () => {
  let lab: GatewayLab;
  let runner: GatewayRunner;
  let secrets: string;
  const servers: ChildProcess[] = [];
  const events: GatewayEvent[] = [];
  const GW = "10.231.3.1:80";

  before(async () => {
    lab = await GatewayLab.start();
    secrets = lab.certificate("app", "good", "secure.example.com");
    servers.push(
      await startGrpcServer(lab.ns.b1, "g1"),
      await startGrpcServer(lab.ns.b2, "g2"),
      await startH2Echo(lab.ns.b1, "h2echo"),
    );
    runner = new GatewayRunner({ netns: lab.ns.gw, secretsDir: secrets, onEvent: (e) => events.push(e) });
    runner.start();
    const h2c = { "9090": { appProtocol: "kubernetes.io/h2c" } };
    const inputs: GatewayInputs = {
      resources: parseGatewayResources(YAML, "grpc.yaml"),
      services: {
        "app/g1": ["10.231.1.2"],
        "app/g2": ["10.231.2.2"],
        "app/both": ["10.231.1.2", "10.231.2.2"],
        "app/v1": ["10.231.1.2"],
        "app/h2echo": ["10.231.1.2"],
      },
      servicePorts: {
        "app/g1": h2c,
        "app/g2": { "9090": { appProtocol: "grpc" } },
        "app/both": h2c,
        "app/h2echo": { "9091": { appProtocol: "kubernetes.io/h2c" } },
      },
      namespaceLabels: {},
      addresses: ["10.231.3.1"],
    };
    const r = await runner.push(inputs);
    assert.equal(r.error, undefined);
  });
  after(async () => {
    for (const s of servers) killGroup(s);
    await runner?.stop();
    lab?.destroy();
  });

  test("routing by method: demo.Other goes to its own backend, with trailers and headers", () => {
    const a = grpcCalls(lab.ns.cl, GW, "/demo.Other/Ping", 3);
    for (const x of a) {
      assert.equal(x.code, 0, JSON.stringify(x));
      assert.equal(x.body?.backend, "g2");
      assert.equal(x.headers["x-backend"], "g2");
      assert.equal(x.trailers["x-trailer"], "t-g2");
    }
  });

  test("one HTTP/2 connection's calls are balanced per request over the Service's two endpoints", async () => {
    const a = grpcCalls(lab.ns.cl, GW, "/demo.Echo/Echo", 40);
    assert.ok(
      a.every((x) => x.code === 0),
      JSON.stringify(a.find((x) => x.code !== 0)),
    );
    const g1 = a.filter((x) => x.body?.backend === "g1").length;
    assert.ok(g1 >= 5 && g1 <= 35, `g1 took ${g1} of 40`);
    // The gateway's events come over IPC, after the (synchronous) client has finished.
    const echo = (): GatewayEvent[] => events.filter((e) => e.url?.endsWith("/demo.Echo/Echo"));
    for (let i = 0; i < 50 && echo().length < 40; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(echo().length, 40, "one gateway event per call");
    const ports = new Set(echo().map((e) => e.client.port));
    assert.equal(ports.size, 1, `the calls came on ${ports.size} client connections`);
    // The route's filters: a request header added, a response header set; the client's address passed on.
    assert.equal(a[0]?.body?.added, "by-gateway");
    assert.equal(a[0]?.body?.xff, "10.231.3.2");
    assert.equal(a[0]?.headers["x-resp"], "r");
  });

  test("weighted backendRefs (3:1) on a regular-expression method match", () => {
    const a = grpcCalls(lab.ns.cl, GW, "/demo.Echo/Weighted", 80);
    const g1 = a.filter((x) => x.body?.backend === "g1").length;
    assert.equal(a.filter((x) => x.code === 0).length, 80);
    assert.ok(g1 > 45 && g1 < 75, `g1 took ${g1} of 80`);
  });

  test("a call that fails upstream keeps its status, message and trailers", () => {
    const [x] = grpcCalls(lab.ns.cl, GW, "/demo.Echo/Fail");
    assert.equal(x?.code, 9, JSON.stringify(x)); // FAILED_PRECONDITION
    assert.match(x?.details ?? "", /^refused by g[12]$/);
    assert.equal(x?.trailers["x-why"], "because");
  });

  test("a missing backend Service: UNAVAILABLE (14); no route: UNIMPLEMENTED (12)", () => {
    assert.equal(grpcCalls(lab.ns.cl, GW, "/demo.Missing/X")[0]?.code, 14);
    assert.equal(grpcCalls(lab.ns.cl, GW, "/demo.Nope/X")[0]?.code, 12);
  });

  test("RequestMirror: the mirror backend gets a copy of each call, the client the main backend's answer", async () => {
    const a = grpcCalls(lab.ns.cl, GW, "/demo.Mirror/Call", 3);
    assert.deepEqual(
      a.map((x) => x.body?.backend),
      ["g2", "g2", "g2"],
    );
    const count = (): number => {
      const [c] = grpcCalls(lab.ns.cl, GW, "/demo.Stats/Count", 1, { metadata: { "x-to": "g1" } });
      assert.equal(c?.body?.backend, "g1");
      return (JSON.parse(c?.body?.got ?? "{}") as Record<string, number>)["/demo.Mirror/Call"] ?? 0;
    };
    let n = count();
    for (let i = 0; i < 20 && n < 3; i++) {
      await new Promise((r) => setTimeout(r, 100));
      n = count();
    }
    assert.equal(n, 3, "calls the mirror took");
  });

  test("HTTPS listener: ALPN h2 carries the gRPC calls", () => {
    const a = grpcCalls(lab.ns.cl, "10.231.3.1:443", "/demo.Other/Ping", 2, {
      authority: "secure.example.com",
      caFile: join(secrets, "app", "good", "tls.crt"),
    });
    assert.deepEqual(
      a.map((x) => [x.code, x.body?.backend]),
      [
        [0, "g2"],
        [0, "g2"],
      ],
    );
  });

  test("a rapid-reset and stream flood on one connection: the gateway stays up, bounded, and serves others", (t) => {
    const pid = runner.pid;
    assert.ok(pid !== undefined);
    const r = spawnSync(
      "ip",
      ["netns", "exec", lab.ns.cl, process.execPath, "-e", H2_FLOOD, `http://${GW}`],
      { encoding: "utf8", timeout: 30_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    t.diagnostic(`flooding session saw: ${r.stdout.trim()}`);
    // The gateway process is the child of `ip netns exec` (same pid after exec).
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    assert.ok(Number(rss) < 400 * 1024, `gateway RSS ${rss} kB after the flood`);
    const after = grpcCalls(lab.ns.cl, GW, "/demo.Other/Ping", 2);
    assert.deepEqual(
      after.map((x) => x.code),
      [0, 0],
      `after the flood: ${r.stdout}`,
    );
  });

  test("HTTP/1.1 clients to an h2c backend: forwarded over HTTP/2, answered as HTTP/1.1 on keep-alive", () => {
    const a = lab.get(`http://${GW}/h2/x?q=1`, 3);
    assert.equal(a.length, 3);
    for (const x of a) {
      assert.equal(x.status, 200, JSON.stringify(x));
      assert.equal(x.headers?.["x-backend"], "h2echo");
      assert.equal(x.headers?.["x-added"], "r");
      const seen = JSON.parse(x.body ?? "{}") as {
        httpVersion: string;
        url: string;
        headers: Record<string, string>;
      };
      assert.equal(seen.httpVersion, "2.0");
      assert.equal(seen.url, "/h2/x?q=1");
      assert.equal(seen.headers["x-forwarded-for"], "10.231.3.2");
    }
  });

  test("an HTTP/2 client routed by an HTTPRoute to an HTTP/1.1 backend", () => {
    const o = h2Get(lab.ns.cl, `http://${GW}`, "/web/x?q=1");
    assert.equal(o.head?.[":status"], 200, JSON.stringify(o));
    assert.equal(o.head?.["x-backend"], "b1");
    assert.equal(o.head?.["x-from-backend"], "changed");
    assert.equal((JSON.parse(o.body ?? "") as { url: string }).url, "/web/x?q=1");
  });
});
