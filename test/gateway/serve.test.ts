/**
 * The gateway process in a real network namespace (root): an outside client
 * namespace sends HTTP and HTTPS requests through it to two echo backends in
 * their own namespaces. Weights, host/path/header matching, redirect,
 * rewrite, header modifiers (request and response), 404, 500 for a missing
 * Service, a listener whose certificate is missing or malformed not served,
 * smuggling attempts refused.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { GatewayCertificates } from "../../src/gateway/certs.js";
import { compileGateways } from "../../src/gateway/compile.js";
import { worldOf } from "../../src/gateway/world.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import type { GatewayInputs } from "../../src/gateway/protocol.js";
import { GatewayRunner } from "../../src/gateway/runner.js";
import { PROXY_NODE_FLAGS } from "../../src/proxy/runtime/node-flags.js";
import { CLASS, gatewayYaml } from "./fixtures.js";
import { GatewayLab } from "./netns-lab.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces)" : false;

const YAML = `${CLASS}${gatewayYaml(
  "gw",
  [
    "{name: http, port: 80, protocol: HTTP}",
    "{name: https, port: 443, protocol: HTTPS, hostname: secure.example.com, tls: {certificateRefs: [{name: good}]}}",
    "{name: missing-cert, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: nothere}]}}",
    "{name: bad-cert, port: 9443, protocol: HTTPS, tls: {certificateRefs: [{name: bad}]}}",
  ],
  { namespace: "app" },
)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /split}}]
    backendRefs: [{name: v1, port: 8080, weight: 80}, {name: v2, port: 8080, weight: 20}]
  - matches: [{path: {type: PathPrefix, value: /hdr}, headers: [{name: x-pick, value: two}]}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /hdr}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: secure.example.com, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /api/v1}}]
    filters:
    - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-set, value: s}], add: [{name: x-add, value: a}], remove: [x-drop]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-from-backend, value: changed}], add: [{name: x-added, value: r}]}}
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{path: {type: Exact, value: /missing}}]
    backendRefs: [{name: gone, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: by-host, namespace: app}
spec:
  parentRefs: [{name: gw}]
  hostnames: [two.example.com, secure.example.com]
  rules:
  - backendRefs: [{name: v2, port: 8080}]
`;

describe("gateway process in namespaces (root)", { skip }, () => {
  let lab: GatewayLab;
  let runner: GatewayRunner;
  let secrets: string;
  const GW = "http://10.231.3.1";

  before(async () => {
    lab = await GatewayLab.start();
    secrets = lab.certificate("app", "good", "secure.example.com");
    lab.certificate("app", "bad", "bad.example.com");
    writeFileSync(
      join(secrets, "app", "bad", "tls.crt"),
      "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    runner = new GatewayRunner({ netns: lab.ns.gw, secretsDir: secrets });
    runner.start();
    const r = await runner.push(inputs());
    assert.equal(r.error, undefined);
  });
  after(async () => {
    await runner?.stop();
    lab?.destroy();
  });

  function inputs(): GatewayInputs {
    return {
      resources: parseGatewayResources(YAML, "gw.yaml"),
      services: { "app/v1": ["10.231.1.2"], "app/v2": ["10.231.2.2"] },
      namespaceLabels: {},
      addresses: ["10.231.3.1"],
    };
  }

  test("the gateway process runs with the proxy's V8 flags (the benchmark's gateway does)", () => {
    // `ip netns exec` execs node in place: the runner's child is the gateway process itself.
    const argv = readFileSync(`/proc/${runner.pid ?? 0}/cmdline`, "utf8").split("\0");
    assert.ok(argv[0]?.endsWith("node"), argv.join(" "));
    for (const f of PROXY_NODE_FLAGS) assert.ok(argv.includes(f), `${f} missing: ${argv.join(" ")}`);
  });

  test("weighted backendRefs split requests 80/20 (within a tolerance) over keep-alive", () => {
    const answers = lab.get(`${GW}/split`, 300);
    const counts = { b1: 0, b2: 0 };
    for (const a of answers) counts[(a.headers?.["x-backend"] ?? "none") as "b1" | "b2"]++;
    assert.equal(counts.b1 + counts.b2, 300, JSON.stringify(answers.find((a) => a.status !== 200)));
    assert.ok(counts.b1 > 200 && counts.b1 < 280, `b1 took ${counts.b1} of 300`);
  });

  test("header and host matching pick the backend", () => {
    assert.equal(lab.get(`${GW}/hdr`, 1, { "x-pick": "two" })[0]?.headers?.["x-backend"], "b2");
    assert.equal(lab.get(`${GW}/hdr`, 1, { "x-pick": "one" })[0]?.headers?.["x-backend"], "b1");
    assert.equal(lab.get(`${GW}/anything`, 1, { host: "two.example.com" })[0]?.headers?.["x-backend"], "b2");
    assert.equal(lab.get(`${GW}/anything`)[0]?.status, 404);
  });

  test("redirect: 301 with the Location the filter builds", () => {
    const a = lab.get(`${GW}/old/page?x=1`, 1, { host: "example.com" })[0];
    assert.equal(a?.status, 301);
    assert.equal(a?.headers?.["location"], "https://secure.example.com/old/page?x=1");
  });

  test("rewrite and header modifiers reach the backend; the response head is modified", () => {
    const a = lab.get(`${GW}/api/v1/items?q=2`, 1, { "x-add": "orig", "x-drop": "secret" })[0];
    assert.equal(a?.status, 200);
    const seen = JSON.parse(a?.body ?? "{}") as {
      url: string;
      headers: Record<string, string>;
      peer: string;
    };
    assert.equal(seen.url, "/v1/items?q=2");
    assert.equal(seen.headers["x-set"], "s");
    assert.equal(seen.headers["x-add"], "orig,a");
    assert.equal(seen.headers["x-drop"], undefined);
    assert.equal(seen.headers["x-forwarded-for"], "10.231.3.2");
    assert.equal(a?.headers?.["x-from-backend"], "changed");
    assert.equal(a?.headers?.["x-added"], "r");
  });

  test("a backendRef to a missing Service answers 500, and its status says BackendNotFound", () => {
    assert.equal(lab.get(`${GW}/missing`)[0]?.status, 500);
    const certs = new GatewayCertificates(secrets);
    const st = compileGateways(worldOf(inputs(), certs, "now")).status;
    const rr = st.routes
      .get("HTTPRoute/app/web")
      ?.parents[0]?.conditions.find((c) => c.type === "ResolvedRefs");
    assert.equal(rr?.status, "False");
    assert.equal(rr?.reason, "BackendNotFound");
  });

  test("HTTPS: the listener terminates TLS with the secret's certificate and routes by SNI host", () => {
    const a = lab.get("https://10.231.3.1/x", 1, { host: "secure.example.com" }, "secure.example.com")[0];
    assert.equal(a?.status, 200, JSON.stringify(a));
    assert.equal(a?.headers?.["x-backend"], "b2");
  });

  test("listeners whose certificate is missing or malformed are not programmed, and not served", () => {
    const certs = new GatewayCertificates(secrets);
    const gw = compileGateways(worldOf(inputs(), certs, "now")).status.gateways.get("Gateway/app/gw");
    for (const name of ["missing-cert", "bad-cert"]) {
      const l = gw?.listeners.find((x) => x.name === name);
      const programmed = l?.conditions.find((c) => c.type === "Programmed");
      const refs = l?.conditions.find((c) => c.type === "ResolvedRefs");
      assert.equal(programmed?.status, "False", name);
      assert.equal(refs?.reason, "InvalidCertificateRef", name);
    }
    assert.equal(
      gw?.listeners.find((x) => x.name === "https")?.conditions.find((c) => c.type === "Programmed")?.status,
      "True",
    );
    assert.match(lab.get("https://10.231.3.1:8443/", 1, {}, "x")[0]?.error ?? "", /ECONNREFUSED/);
    assert.match(lab.get("https://10.231.3.1:9443/", 1, {}, "x")[0]?.error ?? "", /ECONNREFUSED/);
  });

  test("hostile requests are refused with 400 before any backend sees them", () => {
    const smuggle =
      "POST /split HTTP/1.1\\r\\nHost: a\\r\\nContent-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n";
    const script = `const s=require("net").connect(80,"10.231.3.1",()=>s.write("${smuggle}"));let b="";s.on("data",d=>b+=d);s.on("close",()=>console.log(b.split("\\r\\n")[0]))`;
    const r = spawnSync("ip", ["netns", "exec", lab.ns.cl, process.execPath, "-e", script], {
      encoding: "utf8",
      timeout: 10_000,
    });
    assert.equal(r.stdout.trim(), "HTTP/1.1 400 Bad Request");
  });
});
