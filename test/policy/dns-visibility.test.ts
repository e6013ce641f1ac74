/** Which DNS lookups the node's DNS proxy sees (toFQDNs learns only from those). */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";

const DNS_PEER = `
      - toEndpoints:
          - matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}`;

function engineWith(egress: string, extraSpec = ""): PolicyEngine {
  const e = new PolicyEngine();
  e.setNamespace("default", {});
  e.setNamespace("kube-system", {});
  e.upsertEndpoint({ name: "app", namespace: "default", labels: { app: "app" }, ips: ["10.0.1.10"] });
  e.upsertEndpoint({ name: "other", namespace: "default", labels: { app: "other" }, ips: ["10.0.1.11"] });
  e.upsertEndpoint({
    name: "kube-dns",
    namespace: "kube-system",
    labels: { "k8s-app": "kube-dns" },
    ips: ["10.0.5.10"],
  });
  const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: app}}
${extraSpec}  egress:${egress}
`;
  for (const p of parsePolicies(text, "p.yaml")) e.upsertPolicy(p);
  return e;
}

const APP = { namespace: "default", name: "app" };

describe("fc: the DNS proxy sees a lookup only when a DNS rule redirects it and lets the name through", () => {
  const cases: { name: string; egress: string; extra?: string; lookup: string; seen: boolean }[] = [
    {
      name: "DNS allowed at L3/L4 only: not intercepted",
      egress: `${DNS_PEER}\n        toPorts: [{ports: [{port: "53", protocol: UDP}]}]`,
      lookup: "api.github.com",
      seen: false,
    },
    {
      name: "a DNS rule matching the name: seen",
      egress: `${DNS_PEER}\n        toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*.github.com"}]}}]`,
      lookup: "API.GitHub.com.",
      seen: true,
    },
    {
      name: "a DNS rule refusing the name: no answer to learn from",
      egress: `${DNS_PEER}\n        toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: api.github.com}]}}]`,
      lookup: "evil.com",
      seen: false,
    },
    {
      name: "a DNS rule in a direction without default deny gives visibility: every name seen",
      egress: `${DNS_PEER}\n        toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: api.github.com}]}}]`,
      extra: "  enableDefaultDeny: {egress: false}\n",
      lookup: "evil.com",
      seen: true,
    },
    {
      name: "an L3/L4 allow on the same port shadows the DNS rule, still through the proxy: seen",
      egress: `${DNS_PEER}\n        toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: api.github.com}]}}]${DNS_PEER}\n        toPorts: [{ports: [{port: "53", protocol: UDP}]}]`,
      lookup: "evil.com",
      seen: true,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.equal(engineWith(c.egress, c.extra).dnsLookupSeen(APP, c.lookup), c.seen);
    });
  }

  test("an endpoint no policy selects is not intercepted", () => {
    const e = engineWith(
      `${DNS_PEER}\n        toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]`,
    );
    assert.equal(e.dnsLookupSeen({ namespace: "default", name: "other" }, "api.github.com"), false);
    assert.equal(e.dnsLookupSeen(APP, "api.github.com"), true);
  });
});
