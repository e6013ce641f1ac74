/**
 * Remote node labels (issue 11 item 5; Cilium's --enable-node-selector-labels): a
 * remote node registered with its labels gets a node-local identity of
 * reserved:remote-node and those labels, so fromNodes/toNodes select it by its
 * labels, allow and deny alike, while the remote-node and cluster entities still
 * select it. A node without labels stays the reserved remote-node (6).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isMembraneError } from "../../src/errors.js";
import { ID, isLocal } from "../../src/identity/reserved.js";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import { runScenarioText } from "../../src/policy/scenario/index.js";

const db = (rules: string): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: db}}
${rules}`;

function world(policy: string): PolicyEngine {
  const e = new PolicyEngine();
  e.upsertEndpoint({ name: "db", namespace: "default", labels: { app: "db" }, ips: ["10.0.0.1"] });
  for (const p of parsePolicies(policy, "p.yaml")) e.upsertPolicy(p);
  e.setNodeAddress("192.0.2.1", "remote-node", { role: "web" });
  e.setNodeAddress("192.0.2.2", "remote-node", { role: "batch" });
  e.setNodeAddress("192.0.2.3", "remote-node");
  return e;
}
const verdicts = (e: PolicyEngine, port = 5432): string[] =>
  ["192.0.2.1", "192.0.2.2", "192.0.2.3"].map(
    (ip) =>
      e.decide({
        from: { kind: "ip", ip },
        to: { kind: "endpoint", name: "db", namespace: "default" },
        proto: "TCP",
        port,
      }).verdict,
  );
const PORT = `toPorts: [{ports: [{port: "5432", protocol: TCP}]}]`;

describe("remote nodes carry their labels", () => {
  test("a labelled remote node has a node-local identity with reserved:remote-node and its labels", () => {
    const e = world(db("  ingress: []\n"));
    const id = e.ipcache.lookup("192.0.2.1").identity;
    assert.ok(isLocal(id), `identity ${id}`);
    assert.deepEqual(
      [...(e.identity(id)?.labels ?? [])].map((l) => `${l.source}:${l.key}=${l.value}`),
      ["k8s:role=web", "reserved:remote-node="],
    );
    assert.equal(e.ipcache.lookup("192.0.2.3").identity, ID.remoteNode);
  });

  test("fromNodes with labels allows the node carrying them only", () => {
    const e = world(db(`  ingress: [{fromNodes: [{matchLabels: {role: web}}], ${PORT}}]\n`));
    assert.deepEqual(verdicts(e), ["allow", "deny", "deny"]);
  });

  test("a deny rule with fromNodes (accepted now) denies the labelled node, over an allow of every remote node", () => {
    const e = world(
      db(`  ingress: [{fromEntities: [remote-node], ${PORT}}]
  ingressDeny: [{fromNodes: [{matchLabels: {role: batch}}]}]
`),
    );
    assert.deepEqual(verdicts(e), ["allow", "deny", "allow"]);
  });

  test("the cluster entity still selects labelled nodes", () => {
    const e = world(db(`  ingress: [{fromEntities: [cluster], ${PORT}}]\n`));
    assert.deepEqual(verdicts(e), ["allow", "allow", "allow"]);
  });

  test("relabelling a node moves it to its new labels' identity; removing it releases the identity", () => {
    const e = world(db(`  ingress: [{fromNodes: [{matchLabels: {role: web}}], ${PORT}}]\n`));
    const old = e.ipcache.lookup("192.0.2.2").identity;
    e.setNodeAddress("192.0.2.2", "remote-node", { role: "web" });
    assert.deepEqual(verdicts(e), ["allow", "allow", "deny"]);
    assert.equal(e.identity(old), undefined, "the batch identity is gone");
    assert.equal(e.ipcache.lookup("192.0.2.2").identity, e.ipcache.lookup("192.0.2.1").identity);
    assert.equal(e.deleteNodeAddress("192.0.2.1"), true);
    assert.equal(e.deleteNodeAddress("192.0.2.2"), true);
    assert.equal(e.identity(e.ipcache.lookup("192.0.2.3").identity)?.id, ID.remoteNode);
    assert.ok(![...e.identities()].some((i) => i.labels.has("k8s", "role")), "no node identity left");
  });

  test("a malformed node label is refused naming it, and changes nothing", () => {
    const e = world(db("  ingress: []\n"));
    const before = e.revision;
    assert.throws(
      () => e.setNodeAddress("192.0.2.9", "remote-node", { "bad key!": "x" }),
      (err: unknown) => isMembraneError(err) && err.code === "LABEL_INVALID" && /bad key!/.test(err.message),
    );
    assert.equal(e.revision, before);
    assert.equal(e.ipcache.lookup("192.0.2.9").entry, undefined);
  });
});

describe("scenario files name other nodes with their labels (nodes:)", () => {
  const scenario = (nodes: string): string => `name: n
config: {nodeLabels: {role: db}}
nodes: ${nodes}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumClusterwideNetworkPolicy
  metadata: {name: db-host}
  spec:
    nodeSelector: {matchLabels: {role: db}}
    ingress: [{fromNodes: [{matchLabels: {role: web}}], toPorts: [{ports: [{port: "22", protocol: TCP}]}]}]
queries:
  - {from: "remote-node:192.0.2.10", to: host, proto: TCP, port: 22, expect: allow}
  - {from: "remote-node:192.0.2.11", to: host, proto: TCP, port: 22, expect: deny}
`;

  test("a listed node carries its labels; an unlisted one has none", () => {
    const r = runScenarioText(scenario("[{ip: 192.0.2.10, labels: {role: web}}]"), "n.yaml");
    assert.equal(r?.error, undefined, String(r?.error?.message));
    assert.deepEqual(
      r?.results.map((q) => q.actual),
      ["allow", "deny"],
    );
  });

  test("malformed nodes are refused naming the field", () => {
    const r = runScenarioText(
      scenario(
        '[{ip: nope}, {ip: 192.0.2.10, labels: {"bad key!": x}}, {labels: {}}, {ip: 192.0.2.12, zone: a}]',
      ),
      "n.yaml",
    );
    const e = r?.error as { code?: string; issues?: { path: string; message: string }[] } | undefined;
    assert.equal(e?.code, "SCENARIO_INVALID");
    assert.deepEqual(
      e?.issues?.map((i) => i.path),
      ["nodes[0].ip", "nodes[1].labels", "nodes[2]", "nodes[3].zone"],
    );
  });
});
