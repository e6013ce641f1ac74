/**
 * The engine's hot path costs what a change changes: an address of a known
 * identity (a remote endpoint added, moved or deleted) recomputes nothing and
 * journals no endpoint; a new identity recomputes the endpoints whose
 * selectors see it, once per computed policy, and journals exactly those.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress: [{fromEndpoints: [{matchLabels: {app: web}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress: [{fromEndpoints: [{matchLabels: {app: api}}], toPorts: [{ports: [{port: "5432", protocol: TCP}]}]}]
`;

/** 4 api (two identities: version 1 and 2), 4 web, 4 db endpoints; 2 remote web addresses. */
function world(): PolicyEngine {
  const e = new PolicyEngine();
  e.setNamespace("prod", {});
  let n = 1;
  for (const app of ["api", "web", "db"])
    for (let i = 0; i < 4; i++) {
      const labels: Record<string, string> = app === "api" ? { app, version: `${(i % 2) + 1}` } : { app };
      e.upsertEndpoint({ name: `${app}${i}`, namespace: "prod", labels, ips: [`10.0.0.${n++}`] });
    }
  for (const p of parsePolicies(POLICY, "p.yaml")) e.upsertPolicy(p);
  e.upsertRemoteEndpoint({ ip: "10.1.0.1", namespace: "prod", labels: { app: "web" } });
  e.upsertRemoteEndpoint({ ip: "10.1.0.2", namespace: "prod", labels: { app: "web", zone: "b" } });
  assert.equal(e.regenerate().length, 12);
  return e;
}

describe("engine hot path: a change costs what it changes", () => {
  test("an address of an identity in use (added, moved, deleted) recomputes no endpoint and journals none", () => {
    const e = world();
    const before = e.stats;
    const webId = e.resolvePeer({ kind: "ip", ip: "10.1.0.1" }).identity.id;
    e.upsertRemoteEndpoint({ ip: "10.1.0.9", namespace: "prod", labels: { app: "web" } });
    assert.equal(e.ipcache.hosts.get("10.1.0.9"), webId);
    assert.deepEqual(e.regenerate(), []);
    // Moved to the other identity in use, then deleted.
    e.upsertRemoteEndpoint({ ip: "10.1.0.9", namespace: "prod", labels: { app: "web", zone: "b" } });
    assert.deepEqual(e.regenerate(), []);
    assert.equal(e.deleteRemoteEndpoint("10.1.0.9"), true);
    assert.deepEqual(e.regenerate(), []);
    const after = e.stats;
    assert.equal(after.selectorPolicies, before.selectorPolicies, "no SelectorPolicy computed");
    assert.equal(after.endpointsRegenerated, before.endpointsRegenerated, "no endpoint regenerated");
    assert.equal(after.endpointRevision, before.endpointRevision, "no endpoint journaled");
    assert.deepEqual(e.endpointChangesSince(before.endpointRevision), new Set());
  });

  test("a new identity recomputes the endpoints whose selectors see it, once per computed policy", () => {
    const e = world();
    const before = e.stats;
    // {app: web, zone: c} is a new identity: the api policy's fromEndpoints {app: web} selects it.
    e.upsertRemoteEndpoint({ ip: "10.1.0.3", namespace: "prod", labels: { app: "web", zone: "c" } });
    assert.deepEqual(e.regenerate().sort(), ["prod/api0", "prod/api1", "prod/api2", "prod/api3"]);
    const after = e.stats;
    // Two api identities (version 1 and 2): two SelectorPolicies, shared by their four endpoints.
    assert.equal(after.selectorPolicies - before.selectorPolicies, 2);
    assert.equal(after.endpointsRegenerated - before.endpointsRegenerated, 4);
    assert.deepEqual([...(e.endpointChangesSince(before.endpointRevision) ?? [])].sort(), [
      "prod/api0",
      "prod/api1",
      "prod/api2",
      "prod/api3",
    ]);
    // The identity selected by nobody (a label set no selector names) recomputes nothing.
    const mid = e.stats;
    e.upsertRemoteEndpoint({ ip: "10.1.0.4", namespace: "prod", labels: { app: "cache" } });
    assert.deepEqual(e.regenerate(), []);
    assert.equal(e.stats.selectorPolicies, mid.selectorPolicies);
    assert.deepEqual(e.endpointChangesSince(mid.endpointRevision), new Set());
  });

  test("the journal names relabelled and deleted endpoints, and says when it no longer reaches back", () => {
    const e = world();
    const rev = e.stats.endpointRevision;
    e.upsertEndpoint({
      name: "web0",
      namespace: "prod",
      labels: { app: "web", zone: "a" },
      ips: ["10.0.0.5"],
    });
    e.deleteEndpoint("prod", "db3");
    e.regenerate();
    const changed = e.endpointChangesSince(rev);
    assert.ok(changed?.has("prod/web0") && changed.has("prod/db3"), JSON.stringify([...(changed ?? [])]));
    assert.equal(e.endpointChangesSince(e.stats.endpointRevision + 1), undefined, "a future revision");
    assert.equal(e.endpointChangesSince(-1), undefined, "a revision before the journal");
  });
});
