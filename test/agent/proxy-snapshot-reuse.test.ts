/**
 * ProxySnapshots (the enforcer's): when only host addresses changed, the
 * snapshot hands back the last one's endpoint and L7 arrays (no walk over the
 * endpoints); when an L7 rule changed on the same port (the kernel's segments
 * stay the same), the rules are rebuilt. Either way the snapshot equals a
 * from-scratch buildProxySnapshot.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DesiredBuilder, type LocalEndpoint } from "../../src/agent/desired.js";
import { buildProxySnapshot, ProxySnapshots } from "../../src/agent/proxy-snapshot.js";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";

const PROXY = { ipv4: "10.0.0.254", l7Port: 15001, dnsPort: 15053, gid: 1337 };
const policy = (path: string) =>
  parsePolicies(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "${path}"}]}}]
`,
    "p.yaml",
  );

function world(): { engine: PolicyEngine; locals: LocalEndpoint[] } {
  const engine = new PolicyEngine();
  engine.setNamespace("prod", {});
  const locals: LocalEndpoint[] = [];
  for (let i = 0; i < 6; i++) {
    const app = i % 2 === 0 ? "api" : "web";
    const ipv4 = `10.0.0.${i + 1}`;
    engine.upsertEndpoint({ name: `ep${i}`, namespace: "prod", labels: { app }, ips: [ipv4] });
    locals.push({ namespace: "prod", name: `ep${i}`, id: i + 1, hostIfname: `psr${i}`, ipv4 });
  }
  for (const p of policy("/v1")) engine.upsertPolicy(p);
  engine.upsertRemoteEndpoint({ ip: "10.1.0.1", namespace: "prod", labels: { app: "web" } });
  return { engine, locals };
}

describe("ProxySnapshots: a snapshot costs what changed", () => {
  test("an address of an identity in use: the last snapshot's endpoints and L7 rules, the live host table", () => {
    const { engine, locals } = world();
    const b = new DesiredBuilder();
    const snaps = new ProxySnapshots();
    const opts = { proxy: PROXY, authAvailable: false };
    const first = snaps.build(engine, b.build(engine, locals, opts), 1);
    assert.ok(first.l7.length > 0, "the world has L7 rules");
    engine.upsertRemoteEndpoint({ ip: "10.1.0.2", namespace: "prod", labels: { app: "web" } });
    const state = b.build(engine, locals, opts);
    const next = snaps.build(engine, state, 2);
    assert.equal(next.l7, first.l7);
    assert.equal(next.endpoints, first.endpoints);
    assert.equal(next.version, 2);
    assert.equal(next.hosts?.get("10.1.0.2"), engine.ipcache.hosts.get("10.1.0.1"));
    assert.deepEqual(next, buildProxySnapshot(engine, state, 2));
  });

  test("an L7 rule changed on the same port (same kernel segments): the rules are rebuilt", () => {
    const { engine, locals } = world();
    const b = new DesiredBuilder();
    const snaps = new ProxySnapshots();
    const opts = { proxy: PROXY, authAvailable: false };
    const first = snaps.build(engine, b.build(engine, locals, opts), 1);
    for (const p of policy("/v2")) engine.upsertPolicy(p);
    const state = b.build(engine, locals, opts);
    const next = snaps.build(engine, state, 2);
    assert.notDeepEqual(next.l7, first.l7);
    assert.deepEqual(next, buildProxySnapshot(engine, state, 2));
    assert.ok(JSON.stringify(next.l7).includes("/v2"));
  });
});
