/**
 * f7: policy fidelity in the compiled datapath (issue 10 item 5 e, g): what
 * the engine's MapState becomes in DatapathState segments and nft map
 * elements, for L7 rules on an endPort range and for the extended IP
 * protocols (GRE, ESP, ...) that Cilium accepts in toPorts.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { buildDatapathState } from "../../src/agent/desired.js";
import { compile } from "../../src/datapath/compile.js";
import { elementText } from "../../src/datapath/model.js";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";

const PROXY = { ipv4: "10.0.0.254", l7Port: 15001, dnsPort: 15053, gid: 1337 };

function ingressOf(policy: string): {
  segments: { identity: number; proto: number; lo: number; hi: number; action: string; proxy?: string }[];
  elements: string[];
} {
  const e = new PolicyEngine();
  e.upsertEndpoint({ name: "api", namespace: "default", labels: { app: "api" }, ips: ["10.0.1.10"] });
  e.upsertEndpoint({ name: "client", namespace: "default", labels: { app: "client" }, ips: ["10.0.1.20"] });
  for (const p of parsePolicies(policy, "p.yaml")) e.upsertPolicy(p);
  const state = buildDatapathState(
    e,
    [{ namespace: "default", name: "api", id: 1, hostIfname: "f7h1", ipv4: "10.0.1.10" }],
    { proxy: PROXY, authAvailable: false },
  );
  const ep = state.endpoints[0];
  assert.ok(ep);
  const table = compile(state);
  const elements = table.maps
    .filter((m) => m.name.startsWith("g1_in_"))
    .flatMap((m) => m.elements.map((el) => `${m.name}: ${elementText(m, el)}`));
  // The endpoint is the only member of its policy group g1 (policy-groups.ts).
  // The host's allow-all (allowLocalhost: always) is proto 0; only the rule's segments are compared.
  return { segments: ep.ingress.segments.filter((s) => s.proto !== 0), elements };
}

const policy = (toPorts: string): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [${toPorts}]}]
`;

describe("f7 compiled segments of L7 rules on a port range", () => {
  test("an HTTP rule on port 8080 endPort 8090 redirects the whole range to the L7 proxy, and only it", () => {
    const { segments, elements } = ingressOf(
      policy(`{ports: [{port: "8080", endPort: 8090, protocol: TCP}], rules: {http: [{method: GET}]}}`),
    );
    assert.deepEqual(
      segments.map((s) => ({ proto: s.proto, lo: s.lo, hi: s.hi, action: s.action, proxy: s.proxy })),
      [{ proto: 6, lo: 8080, hi: 8090, action: "redirect", proxy: "l7" }],
    );
    const redirect = elements.filter((t) => t.includes("8080-8090"));
    assert.equal(redirect.length, 1, elements.join("\n"));
    assert.match(redirect[0] as string, /6 \. 8080-8090 : goto g1_in_p\d+/);
  });

  test("a Kafka rule and a serverNames rule on a range redirect the range too", () => {
    for (const rules of [`rules: {kafka: [{topic: t}]}`, `serverNames: [api.example.com]`]) {
      const { segments } = ingressOf(
        policy(`{ports: [{port: "9092", endPort: 9094, protocol: TCP}], ${rules}}`),
      );
      assert.deepEqual(
        segments.map((s) => [s.proto, s.lo, s.hi, s.action, s.proxy]),
        [[6, 9092, 9094, "redirect", "l7"]],
        rules,
      );
    }
  });
});

describe("f7 compiled segments of the extended IP protocols", () => {
  test("GRE, ESP and VRRP rules compile to their protocol numbers with every port, matched by l4proto", () => {
    const { segments, elements } = ingressOf(
      policy(`{ports: [{protocol: GRE}, {port: "0", protocol: ESP}, {protocol: vrrp}]}`),
    );
    assert.deepEqual(
      segments.map((s) => [s.proto, s.lo, s.hi, s.action]),
      [
        [47, 0, 65535, "allow"],
        [50, 0, 65535, "allow"],
        [112, 0, 65535, "allow"],
      ],
    );
    for (const p of [47, 50, 112]) {
      assert.ok(
        elements.some((t) => t.includes(` . ${p} . 0-65535 : `)),
        `${p}: ${elements.join("\n")}`,
      );
    }
  });
});
