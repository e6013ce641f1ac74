/**
 * The gateway process over IPv6 (root): the GatewayLab's links dual-stack, a Gateway whose
 * address is the gateway namespace's IPv6 address, an HTTPRoute to a Service whose endpoints
 * are the two backends' IPv6 addresses. Real packets from the outside client namespace:
 * both backends answer on one kept-alive connection, each saw the gateway's IPv6 address as
 * its peer and the client's in X-Forwarded-For; an IPv4 Gateway beside it keeps serving.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import type { GatewayInputs } from "../../src/gateway/protocol.js";
import { GatewayRunner } from "../../src/gateway/runner.js";
import { CLASS, gatewayYaml } from "./fixtures.js";
import { GatewayLab } from "./netns-lab.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces)" : false;

const GW6 = "fd00:231:3::1";
const GW4 = "10.231.3.1";

/** A Gateway in app on its own address, HTTP on 80. */
const gw = (name: string, address: string): string =>
  gatewayYaml(name, ["{name: http, port: 80, protocol: HTTP}"], {
    namespace: "app",
    spec: [`addresses: [{type: IPAddress, value: "${address}"}]`],
  });

const YAML = `${CLASS}${gw("gw6", GW6)}${gw("gw4", GW4)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: six, namespace: app}
spec:
  parentRefs: [{name: gw6}, {name: gw4}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /six}}]
    backendRefs: [{name: both6, port: 8080}]
  - backendRefs: [{name: v1, port: 8080}]
`;

interface Seen {
  backend: string;
  peer: string;
  headers: Record<string, string>;
}

describe("gateway process over IPv6 in namespaces (root)", { skip }, () => {
  let lab: GatewayLab;
  let runner: GatewayRunner;

  before(async () => {
    lab = await GatewayLab.start({ ipv6: true });
    runner = new GatewayRunner({ netns: lab.ns.gw, secretsDir: lab.dir });
    runner.start();
    const inputs: GatewayInputs = {
      resources: parseGatewayResources(YAML, "gw6.yaml"),
      services: { "app/both6": ["fd00:231:1::2", "fd00:231:2::2"], "app/v1": ["10.231.1.2"] },
      namespaceLabels: {},
      addresses: [GW4, GW6],
    };
    const r = await runner.push(inputs);
    assert.equal(r.error, undefined);
  });
  after(async () => {
    await runner?.stop();
    lab?.destroy();
  });

  test("a listener on the IPv6 address forwards to both IPv6 backends over one kept-alive client connection", () => {
    const answers = lab.get(`http://[${GW6}]/six/x`, 40);
    const seen = answers.map((a) => {
      assert.equal(a.status, 200, JSON.stringify(a));
      return JSON.parse(a.body ?? "{}") as Seen;
    });
    const by = new Map<string, Seen[]>();
    for (const s of seen) by.set(s.backend, [...(by.get(s.backend) ?? []), s]);
    assert.deepEqual([...by.keys()].sort(), ["b1", "b2"], "both backends answered");
    // Each backend saw the gateway's IPv6 address on its link, and the client's in X-Forwarded-For.
    assert.deepEqual([...new Set(by.get("b1")?.map((s) => s.peer))], ["fd00:231:1::1"]);
    assert.deepEqual([...new Set(by.get("b2")?.map((s) => s.peer))], ["fd00:231:2::1"]);
    assert.deepEqual([...new Set(seen.map((s) => s.headers["x-forwarded-for"]))], ["fd00:231:3::2"]);
    assert.deepEqual([...new Set(seen.map((s) => s.headers["host"]))], [`[${GW6}]`]);
  });

  test("the IPv4 Gateway beside it serves its own address, to the IPv4 backend", () => {
    const a = lab.get(`http://${GW4}/other`)[0];
    assert.equal(a?.status, 200, JSON.stringify(a));
    const s = JSON.parse(a?.body ?? "{}") as Seen;
    assert.equal(s.backend, "b1");
    assert.equal(s.peer, "::ffff:10.231.1.1", "the dual-stack echo sees the IPv4 peer mapped");
  });
});
