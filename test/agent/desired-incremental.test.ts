/**
 * DesiredBuilder costs what changed: an address of an identity in use visits
 * no endpoint (the state's arrays come back as they were, the host table
 * carries the address); a new identity visits exactly the endpoints whose
 * selectors see it; and after every step of random sequences the incremental
 * build equals a from-scratch build.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { buildDatapathState, DesiredBuilder, type LocalEndpoint } from "../../src/agent/desired.js";
import type { DatapathState } from "../../src/datapath/types.js";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import type { RuleOrigin } from "../../src/policy/types.js";
import { opArb, World } from "../datapath/pp-world.js";

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress: [{fromEndpoints: [{matchLabels: {app: web}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
  egress: [{toEndpoints: [{matchLabels: {app: db}}], toPorts: [{ports: [{port: "5432", protocol: TCP}]}]}]
`;

const APPS = ["api", "web", "db"] as const;

/** 30 endpoints (10 per app), the policy, one remote web address; `visits` counts endpointPolicy calls. */
function world(): {
  engine: PolicyEngine;
  locals: LocalEndpoint[];
  visits: () => number;
  visited: Set<string>;
} {
  const engine = new PolicyEngine();
  engine.setNamespace("prod", {});
  const locals: LocalEndpoint[] = [];
  for (let i = 0; i < 30; i++) {
    const app = APPS[i % 3] as string;
    const ipv4 = `10.0.0.${i + 1}`;
    engine.upsertEndpoint({ name: `ep${i}`, namespace: "prod", labels: { app }, ips: [ipv4] });
    locals.push({ namespace: "prod", name: `ep${i}`, id: i + 1, hostIfname: `h${i}`, ipv4 });
  }
  for (const p of parsePolicies(POLICY, "p.yaml")) engine.upsertPolicy(p);
  engine.upsertRemoteEndpoint({ ip: "10.1.0.1", namespace: "prod", labels: { app: "web" } });
  let n = 0;
  const visited = new Set<string>();
  const real = engine.endpointPolicy.bind(engine);
  engine.endpointPolicy = (ns, name) => {
    n++;
    visited.add(`${ns}/${name}`);
    return real(ns, name);
  };
  return { engine, locals, visits: () => n, visited };
}

/** The state as plain data (the host table as its entries). */
function plain(s: DatapathState): unknown {
  const hosts = [...(s.hosts?.entries() ?? [])].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  return { ...s, hosts };
}

describe("DesiredBuilder: a build costs what changed", () => {
  test("an address of an identity in use, added then deleted, visits no endpoint", () => {
    const { engine, locals, visits } = world();
    const b = new DesiredBuilder();
    const first = b.build(engine, locals);
    const v0 = visits();
    engine.upsertRemoteEndpoint({ ip: "10.1.0.9", namespace: "prod", labels: { app: "web" } });
    const added = b.build(engine, locals);
    assert.equal(visits() - v0, 0, "endpoints visited for one address");
    assert.equal(added.endpoints, first.endpoints, "the same endpoint array");
    assert.equal(added.rules, first.rules);
    assert.equal(
      added.hosts?.get("10.1.0.9"),
      engine.resolvePeer({ kind: "ip", ip: "10.1.0.1" }).identity.id,
    );
    engine.deleteRemoteEndpoint("10.1.0.9");
    const deleted = b.build(engine, locals);
    assert.equal(visits() - v0, 0, "endpoints visited for one address");
    assert.equal(deleted.endpoints, first.endpoints);
    assert.equal(deleted.hosts?.get("10.1.0.9"), undefined);
    assert.deepEqual(plain(deleted), plain(buildDatapathState(engine, locals)));
  });

  test("a new identity visits exactly the endpoints whose selectors see it", () => {
    const { engine, locals, visited } = world();
    const b = new DesiredBuilder();
    const first = b.build(engine, locals);
    visited.clear();
    // {app: web, zone: c}: a new identity, selected by the api endpoints' ingress.
    engine.upsertRemoteEndpoint({ ip: "10.1.0.3", namespace: "prod", labels: { app: "web", zone: "c" } });
    const next = b.build(engine, locals);
    const api = locals.filter((l) => l.id % 3 === 1).map((l) => `prod/${l.name}`);
    assert.deepEqual([...visited].sort(), api.sort(), "the 10 api endpoints, and only them");
    const byId = new Map(first.endpoints.map((ep) => [ep.id, ep]));
    for (const ep of next.endpoints) {
      const isApi = ep.id % 3 === 1;
      assert.equal(byId.get(ep.id) !== ep, isApi, `${ep.name} rebuilt only if api`);
    }
    assert.deepEqual(plain(next), plain(buildDatapathState(engine, locals)));
  });

  test("an endpoint's wiring changed (another veth) rebuilds that endpoint only", () => {
    const { engine, locals, visits } = world();
    const b = new DesiredBuilder();
    const first = b.build(engine, locals);
    const v0 = visits();
    const moved = locals.map((l) => (l.id === 5 ? { ...l, hostIfname: "h5b" } : l));
    const next = b.build(engine, moved);
    assert.equal(visits() - v0, 1);
    assert.equal(next.endpoints.filter((ep, i) => ep !== first.endpoints[i]).length, 1);
    assert.equal(next.endpoints.find((ep) => ep.id === 5)?.hostIfname, "h5b");
    // One endpoint fewer: the rest are the same objects.
    const fewer = b.build(engine, moved.slice(1));
    assert.equal(fewer.endpoints.length, 29);
    assert.deepEqual(plain(fewer), plain(buildDatapathState(engine, moved.slice(1))));
  });

  test("after every step of random sequences, the incremental build equals a from-scratch build", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(opArb, { minLength: 1, maxLength: 30 }), (dual, ops) => {
        const w = new World(dual);
        const b = new DesiredBuilder();
        for (const o of ops) {
          w.step(o);
          // World's own builder decides the options (proxy on or off) as the agent would.
          const st = w.state();
          const opts = st.proxy ? { proxy: st.proxy, authAvailable: false } : { authAvailable: false };
          const eps = [...w.local.values()].sort((a, c) => a.id - c.id);
          const originsInc = new Map<number, RuleOrigin>();
          const originsRef = new Map<number, RuleOrigin>();
          const inc = b.build(w.engine, eps, opts, originsInc);
          const ref = buildDatapathState(w.engine, eps, opts, originsRef);
          assert.deepEqual(plain(inc), plain(ref), JSON.stringify(o));
          assert.deepEqual(originsInc, originsRef, "rule origins");
        }
      }),
      { seed: 20261204, numRuns: 60 },
    );
  });
});
