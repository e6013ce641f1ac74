/**
 * The scenario world of the L7 datapath tests: HTTP, Kafka and a two-parser
 * port on `web`, DNS rules to kube-dns and TLS server names on `client`'s
 * egress; and the planning a datapath run does for its queries.
 */
import { parseScenario } from "../../src/policy/scenario/load.js";
import { ScenarioSession } from "../../src/policy/scenario/session.js";
import { learnDns, nodeCidrs, planQuery } from "../../src/scenario/datapath-plan.js";
import { hostChecked } from "../../src/scenario/datapath-plan-l7.js";

export const WORLD = `
name: l7plan
namespaces:
  kube-system: {labels: {}}
endpoints:
  - {name: web, namespace: default, labels: {app: web}, ip: 10.0.1.10}
  - {name: client, namespace: default, labels: {app: client}, ip: 10.0.1.20}
  - {name: other, namespace: default, labels: {app: other}, ip: 10.0.1.30}
  - {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}, ip: 10.0.1.53}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: web, namespace: default}
  spec:
    endpointSelector: {matchLabels: {app: web}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts:
          - ports: [{port: "80", protocol: TCP}]
            rules: {http: [{method: GET, path: "/public/.*"}]}
          - ports: [{port: "9092", protocol: TCP}]
            rules: {kafka: [{role: produce, topic: t}]}
          - ports: [{port: "8080", protocol: TCP}]
            rules: {http: [{host: "10\\\\.0\\\\.1\\\\.10:8080"}]}
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts:
          - ports: [{port: "8000", protocol: TCP}]
            rules: {http: [{method: GET}]}
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts:
          - ports: [{port: "8000", protocol: TCP}]
            rules: {kafka: [{role: produce}]}
  ---
  apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: client, namespace: default}
  spec:
    endpointSelector: {matchLabels: {app: client}}
    egress:
      - toEndpoints: [{matchLabels: {app: web}}]
      - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
        toPorts:
          - ports: [{port: "53", protocol: UDP}]
            rules: {dns: [{matchPattern: "*.example.com"}]}
      - toCIDR: [203.0.113.0/24]
        toPorts:
          - ports: [{port: "443", protocol: TCP}]
            serverNames: [api.example.com]
`;

export type Plan = ReturnType<typeof planQuery>;

/** Plans the queries of WORLD plus `queries`, as the datapath run does (Host check included). */
export function plans(queries: string): Plan[] {
  const s = parseScenario(`${WORLD}queries:\n${queries}`, "t.yaml");
  const session = new ScenarioSession({ world: s });
  const dnsNames = new Map<string, string[]>();
  const ctx = { scenario: s, cidrs: nodeCidrs(s), dnsNames };
  return s.queries.map((q) => {
    const flow = session.prepare(q, { prefix: "" });
    learnDns(dnsNames, q);
    const d = session.engine.decide(flow);
    return hostChecked(q, planQuery(q, d, ctx), flow, d, (f) => session.engine.decide(f));
  });
}
