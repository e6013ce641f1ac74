/**
 * Host policies select nodes by their labels (issue 11 item 5, Cilium's host
 * firewall): a CCNP's `nodeSelector` with labels applies on the nodes whose
 * labels (`--node-labels`, engine config `nodeLabels`; in a scenario
 * `config.nodeLabels`) it selects, and only there. Offline, through the
 * scenario runner.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parsePolicies } from "../../src/policy/api/index.js";
import { runScenarioText } from "../../src/policy/scenario/index.js";

const POLICIES = `policies: |
  apiVersion: cilium.io/v2
  kind: CiliumClusterwideNetworkPolicy
  metadata: {name: edge-ssh}
  spec:
    nodeSelector: {matchLabels: {role: edge}}
    ingress:
      - fromEntities: [world]
        toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  ---
  apiVersion: cilium.io/v2
  kind: CiliumClusterwideNetworkPolicy
  metadata: {name: workers-kubelet}
  spec:
    nodeSelector:
      matchExpressions: [{key: node-role.kubernetes.io/worker, operator: Exists}]
    ingress:
      - fromEntities: [world]
        toPorts: [{ports: [{port: "10250", protocol: TCP}]}]
`;

function verdicts(config: string): string[] {
  const text = `name: node-labels
${config}
endpoints:
  - {name: web, namespace: default, labels: {app: web}, ip: 10.0.1.10}
${POLICIES}queries:
  - {from: "world:1.2.3.4", to: host, proto: TCP, port: 22, expect: allow}
  - {from: "world:1.2.3.4", to: host, proto: TCP, port: 10250, expect: allow}
`;
  const r = runScenarioText(text, "node-labels.yaml");
  assert.equal(r?.error, undefined, String(r?.error?.message));
  return (r?.results ?? []).map((q) => `${q.actual} (${q.decidedBy.join("; ")})`);
}

describe("host policies select nodes by their labels", () => {
  const cases: { name: string; config: string; want: [string, string] }[] = [
    {
      name: "a node labelled role=edge takes the edge policy only: ssh allowed, the kubelet port dropped",
      config: "config: {nodeLabels: {role: edge}}",
      want: ["allow", "deny"],
    },
    {
      name: "a worker node (label key exists) takes the workers policy only",
      config: 'config: {nodeLabels: {"node-role.kubernetes.io/worker": ""}}',
      want: ["deny", "allow"],
    },
    {
      name: "a node with both labels takes both policies",
      config: 'config: {nodeLabels: {role: edge, "node-role.kubernetes.io/worker": ""}}',
      want: ["allow", "allow"],
    },
    {
      name: "a node without labels is selected by neither: the host is not under policy",
      config: "",
      want: ["allow", "allow"],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const got = verdicts(c.config);
      assert.deepEqual(
        got.map((v) => v.split(" ")[0]),
        c.want,
        got.join(" | "),
      );
    });
  }

  test("a labelled nodeSelector is accepted by the parser (it was refused while nodes carried no labels)", () => {
    const res = parsePolicies(
      `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: hosts}
spec:
  nodeSelector: {matchLabels: {role: worker}}
  ingress: [{fromEntities: [world]}]
`,
      "h.yaml",
    );
    assert.equal(res[0]?.rules[0]?.selectsNodes, true);
  });

  test("a malformed node label in a scenario is refused naming config.nodeLabels", () => {
    const r = runScenarioText(
      `name: bad
config: {nodeLabels: {"bad key!": x}}
endpoints: []
policies: ""
queries: [{from: "world:1.2.3.4", to: host, proto: TCP, port: 22, expect: allow}]
`,
      "bad.yaml",
    );
    const e = r?.error as { code?: string; issues?: { path: string; line?: number }[] } | undefined;
    assert.equal(e?.code, "SCENARIO_INVALID");
    assert.deepEqual(
      e?.issues?.map((i) => [i.path, i.line]),
      [["config.nodeLabels", 2]],
    );
  });
});

function nodePeers(nodeLabels: string, nodes: string): string[] {
  const text = `name: node-peers
config: {nodeLabels: ${nodeLabels}, allowLocalhost: policy}
endpoints:
  - {name: web, namespace: default, labels: {app: web}, ip: 10.0.1.10}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: web, namespace: default}
  spec:
    endpointSelector: {matchLabels: {app: web}}
    ingress:
      - fromNodes: [${nodes}]
        toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
    egress:
      - toNodes: [${nodes}]
        toPorts: [{ports: [{port: "10250", protocol: TCP}]}]
queries:
  - {from: host, to: web, proto: TCP, port: 8080, expect: allow}
  - {from: "remote-node:192.0.2.5", to: web, proto: TCP, port: 8080, expect: allow}
  - {from: web, to: host, proto: TCP, port: 10250, expect: allow}
  - {from: web, to: "remote-node:192.0.2.5", proto: TCP, port: 10250, expect: allow}
  - {from: "world:1.2.3.4", to: web, proto: TCP, port: 8080, expect: allow}
`;
  const r = runScenarioText(text, "node-peers.yaml");
  assert.equal(r?.error, undefined, String(r?.error?.message));
  return (r?.results ?? []).map((q) => q.actual);
}

describe("fromNodes / toNodes select nodes by their labels", () => {
  test("with allowLocalhost: policy, a labelled selector selects this node when its labels match (ingress from and egress to the host), never world", () => {
    assert.deepEqual(nodePeers("{role: edge}", "{matchLabels: {role: edge}}"), [
      "allow",
      "deny",
      "allow",
      "deny",
      "deny",
    ]);
  });

  test("a labelled selector does not select this node when its labels differ", () => {
    assert.deepEqual(nodePeers("{role: worker}", "{matchLabels: {role: edge}}"), [
      "deny",
      "deny",
      "deny",
      "deny",
      "deny",
    ]);
  });

  test("an empty selector selects every node: this one and remote nodes (here one without labels)", () => {
    assert.deepEqual(nodePeers("{role: worker}", "{}"), ["allow", "allow", "allow", "allow", "deny"]);
  });

  test("fromNodes in a deny rule is accepted (remote nodes carry their labels: remote-node-labels.test.ts)", () => {
    const [p] = parsePolicies(
      `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: d, namespace: default}
spec:
  endpointSelector: {}
  ingressDeny: [{fromNodes: [{matchLabels: {role: edge}}]}]
`,
      "d.yaml",
    );
    assert.ok(p);
  });
});
