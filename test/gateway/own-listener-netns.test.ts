/**
 * A backend endpoint that is the gateway's own listener (a tenant-written EndpointSlice can say
 * so) is never connected to: the gateway process in real namespaces answers 500 with a reason,
 * once, instead of proxying the request to itself again and again (HTTP/1.1 and HTTP/2, an
 * IPv4-mapped spelling too, and a RequestMirror to it); a backend with another endpoint uses that
 * one; a normal backend still works.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { GatewayEvent } from "../../src/gateway/exchange.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import type { GatewayInputs } from "../../src/gateway/protocol.js";
import { GatewayRunner } from "../../src/gateway/runner.js";
import { CLASS, gatewayYaml } from "./fixtures.js";
import { GatewayLab, h2Get } from "./netns-lab.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces)" : false;

const route = (path: string, backend: string, port: number, extra = ""): string =>
  `  - matches: [{path: {type: PathPrefix, value: ${path}}}]\n${extra}    backendRefs: [{name: ${backend}, port: ${port}}]\n`;

const YAML = `${CLASS}${gatewayYaml(
  "gw",
  ["{name: http, port: 80, protocol: HTTP}", "{name: alt, port: 8080, protocol: HTTP}"],
  { namespace: "app" },
)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
${route("/loop", "self", 80)}${route("/mapped", "mapped", 80)}${route("/mixed", "mixed", 8080)}${route("/ok", "v1", 8080)}${route(
  "/mirror",
  "v1",
  8080,
  "    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: self, port: 80}}}]\n",
)}`;

describe("a backend endpoint that is the gateway's own listener (root)", { skip }, () => {
  let lab: GatewayLab;
  let runner: GatewayRunner;
  const events: GatewayEvent[] = [];
  const GW = "http://10.231.3.1";

  before(async () => {
    lab = await GatewayLab.start();
    runner = new GatewayRunner({
      netns: lab.ns.gw,
      secretsDir: lab.dir,
      onEvent: (e) => events.push(e),
    });
    runner.start();
    const inputs: GatewayInputs = {
      resources: parseGatewayResources(YAML, "gw.yaml"),
      services: {
        "app/self": ["10.231.3.1"],
        "app/mapped": ["::ffff:10.231.3.1"],
        // The gateway's alt listener and b1, both on 8080: only b1 may be picked.
        "app/mixed": ["10.231.3.1", "10.231.1.2"],
        "app/v1": ["10.231.1.2"],
      },
      namespaceLabels: {},
      addresses: ["10.231.3.1"],
    };
    const r = await runner.push(inputs);
    assert.equal(r.error, undefined);
  });
  after(async () => {
    await runner?.stop();
    lab?.destroy();
  });

  /** The events of requests to `path` once they arrived (batched per loop turn), and a moment more. */
  async function eventsOf(path: string): Promise<GatewayEvent[]> {
    const of = (): GatewayEvent[] => events.filter((e) => e.url?.endsWith(path) === true);
    for (let i = 0; i < 50 && of().length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 300));
    return of();
  }

  for (const path of ["/loop", "/mapped"])
    test(`HTTP/1.1 ${path}: 500 with the reason, one request only (not proxied to itself)`, async () => {
      const a = lab.get(`${GW}${path}`)[0];
      assert.equal(a?.status, 500, JSON.stringify(a));
      const seen = await eventsOf(path);
      assert.equal(seen.length, 1, JSON.stringify(seen.slice(0, 3)));
      assert.equal(seen[0]?.status, 500);
      assert.match(seen[0]?.reason ?? "", /gateway's own listener/);
    });

  test("HTTP/2 (h2c prior knowledge): 500, one request only", async () => {
    const o = h2Get(lab.ns.cl, "http://10.231.3.1:80", "/loop/h2");
    assert.deepEqual(
      { status: o.head?.[":status"], error: o.error },
      { status: 500, error: undefined },
      o.stderr,
    );
    const seen = await eventsOf("/loop/h2");
    assert.equal(seen.length, 1, JSON.stringify(seen.slice(0, 3)));
    assert.match(seen[0]?.reason ?? "", /gateway's own listener/);
  });

  test("a backend with another endpoint: that one, never the gateway's alt listener", async () => {
    const answers = lab.get(`${GW}/mixed`, 20);
    assert.deepEqual(
      answers.map((a) => `${a.status} ${a.headers?.["x-backend"] ?? a.error ?? ""}`),
      Array.from({ length: 20 }, () => "200 b1"),
    );
    // One request each, to b1 (a hop through the alt listener would be a request of its own there).
    const seen = await eventsOf("/mixed");
    assert.deepEqual(
      seen.map((e) => `${e.listener} ${e.backend?.address ?? ""}`),
      Array.from({ length: 20 }, () => "10.231.3.1:80 10.231.1.2"),
    );
  });

  test("a normal backend still works; a mirror to the gateway itself is not sent", async () => {
    assert.equal(lab.get(`${GW}/ok`)[0]?.headers?.["x-backend"], "b1");
    const a = lab.get(`${GW}/mirror`)[0];
    assert.equal(a?.status, 200, JSON.stringify(a));
    assert.equal(a?.headers?.["x-backend"], "b1");
    // A mirror copy sent to the gateway would be a request of its own there (and mirrored again).
    const seen = await eventsOf("/mirror");
    assert.equal(seen.length, 1, JSON.stringify(seen.slice(0, 3)));
  });
});
