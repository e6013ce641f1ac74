/** `policy test` names the rule that allowed a flow, whoever's policy it is. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { runScenarioText } from "../../src/policy/scenario/index.js";

const HOST = `name: host-policy
endpoints:
  - {name: web, namespace: default, labels: {app: web}, ip: 10.0.1.10}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumClusterwideNetworkPolicy
  metadata: {name: host-fw}
  spec:
    nodeSelector: {}
    ingress:
      - fromEntities: [world]
        toPorts: [{ports: [{port: "22", protocol: TCP}]}]
    egress:
      - toEntities: [world]
        toPorts: [{ports: [{port: "443", protocol: TCP}]}]
queries:
  - {from: "world:1.2.3.4", to: host, proto: TCP, port: 22, expect: allow}
  - {from: host, to: "world:1.1.1.1", proto: TCP, port: 443, expect: allow}
  - {from: "world:1.2.3.4", to: host, proto: TCP, port: 23, expect: deny}
  - {from: "world:1.2.3.4", to: web, proto: TCP, port: 80, expect: allow}
`;

const DNS = `name: dns-without-default-deny
namespaces:
  kube-system: {labels: {}}
endpoints:
  - {name: app, namespace: default, labels: {app: app}, ip: 10.0.1.10}
  - {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}, ip: 10.0.5.10}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: app-dns, namespace: default}
  spec:
    endpointSelector: {matchLabels: {app: app}}
    enableDefaultDeny: {egress: false}
    egress:
      - toEndpoints:
          - matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}
        toPorts:
          - ports: [{port: "53", protocol: UDP}]
            rules:
              dns: [{matchName: api.github.com}]
queries:
  - {from: app, to: kube-dns, proto: UDP, dnsQuery: api.github.com, expect: allow}
  - {from: app, to: "world:1.1.1.1", proto: TCP, port: 443, expect: allow}
`;

function decidedBy(text: string): string[] {
  const r = runScenarioText(text, "s.yaml");
  assert.equal(r?.error, undefined);
  return (r?.results ?? []).map((q) => q.decidedBy.join("; "));
}

describe("policy test names the deciding rule", () => {
  test("a host policy's allow names the host policy's rule, not 'no policy enforced'", () => {
    assert.deepEqual(decidedBy(HOST), [
      "ingress (host policy): host-fw spec.ingress[0]",
      "egress (host policy): host-fw spec.egress[0]",
      "ingress (host policy): default deny (no rule allows)",
      "no policy enforced on either side",
    ]);
  });

  test("a DNS rule of a policy without egress default deny names its rule", () => {
    assert.deepEqual(decidedBy(DNS), [
      "egress: default/app-dns spec.egress[0] (dns allow; no default deny in this direction)",
      "no policy enforced on either side",
    ]);
  });
});
