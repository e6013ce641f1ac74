/**
 * Incremental recomputation: a change regenerates only the endpoints whose
 * computed policy it can affect (policy changes: the subjects of the old and
 * new rules; new identities from DNS answers: the endpoints whose selectors
 * see them), and what is regenerated equals a from-scratch computation.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import type { DirectionPolicy } from "../../src/policy/resolve.js";
import type { PolicyResource } from "../../src/policy/types.js";

function cnp(name: string, app: string, spec: string): PolicyResource[] {
  const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: ${app}}}
${spec}`;
  return parsePolicies(text, `${name}.yaml`);
}

const FROM_WEB = `  ingress: [{fromEndpoints: [{matchLabels: {app: web}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]\n`;
const FROM_API = `  ingress: [{fromEndpoints: [{matchLabels: {app: api}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]\n`;
const TO_FQDN = `  egress:
    - toFQDNs: [{matchName: api.example.com}]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`;
const TO_CIDR = `  egress: [{toCIDR: [10.9.0.0/16]}]\n`;

/** Four endpoints; `api` and `db` are under policy, `web` and `idle` are not. */
function world(): PolicyEngine {
  const e = new PolicyEngine();
  e.setNamespace("prod", {});
  for (const [name, ip] of [
    ["api", "10.0.0.1"],
    ["web", "10.0.0.2"],
    ["db", "10.0.0.3"],
    ["idle", "10.0.0.4"],
  ] as const) {
    e.upsertEndpoint({ name, namespace: "prod", labels: { app: name }, ips: [ip] });
  }
  for (const p of cnp("api", "api", FROM_WEB)) e.upsertPolicy(p);
  for (const p of cnp("db", "db", FROM_API)) e.upsertPolicy(p);
  assert.deepEqual(e.regenerate().sort(), ["prod/api", "prod/db", "prod/idle", "prod/web"]);
  assert.deepEqual(e.regenerate(), [], "nothing changed, nothing regenerated");
  return e;
}

/** A direction's MapState as text; identities by their labels (local numbers depend on order). */
function entries(e: PolicyEngine, p: DirectionPolicy): string[] {
  const name = (id: number) => (id === 0 ? "any" : (e.identity(id)?.labels.toString() ?? `?${id}`));
  const out = [...p.mapState.entries()].map(
    (x) => `${name(x.identity)} ${x.proto}:${x.lo}-${x.hi}${x.deny ? " deny" : ""}${x.l7 ? " l7" : ""}`,
  );
  return [`enforced=${p.enforced}`, ...out.sort()];
}

/** Every endpoint's regenerated policy equals the policy a fresh engine computes. */
function assertFromScratch(e: PolicyEngine): void {
  const fresh = e.fork();
  fresh.regenerate();
  for (const ep of e.listEndpoints()) {
    const got = e.endpointPolicy(ep.spec.namespace, ep.spec.name);
    const want = fresh.endpointPolicy(ep.spec.namespace, ep.spec.name);
    for (const dir of ["ingress", "egress"] as const) {
      assert.deepEqual(entries(e, got[dir]), entries(fresh, want[dir]), `${ep.key} ${dir}`);
    }
  }
}

describe("incremental recomputation: only the endpoints a change touches are regenerated", () => {
  test("adding a policy regenerates its subjects only", () => {
    const e = world();
    for (const p of cnp("web", "web", FROM_API)) e.upsertPolicy(p);
    assert.deepEqual(e.regenerate(), ["prod/web"]);
    assertFromScratch(e);
  });

  test("changing a policy regenerates the subjects of its old and new rules only", () => {
    const e = world();
    // Same subject, new rule: only api.
    for (const p of cnp("api", "api", FROM_API)) e.upsertPolicy(p);
    assert.deepEqual(e.regenerate(), ["prod/api"]);
    // The subject moves from api to idle: both, and nothing else.
    for (const p of cnp("api", "idle", FROM_API)) e.upsertPolicy(p);
    assert.deepEqual(e.regenerate().sort(), ["prod/api", "prod/idle"]);
    assertFromScratch(e);
  });

  test("deleting a policy regenerates its subjects only", () => {
    const e = world();
    assert.equal(e.deletePolicy({ kind: "CiliumNetworkPolicy", name: "db", namespace: "prod" }), true);
    assert.deepEqual(e.regenerate(), ["prod/db"]);
    assertFromScratch(e);
  });

  test("a CIDR policy's new identity regenerates its subject only", () => {
    const e = world();
    for (const p of cnp("web", "web", TO_CIDR)) e.upsertPolicy(p);
    assert.deepEqual(e.regenerate(), ["prod/web"]);
    assertFromScratch(e);
  });

  test("a DNS-learned address regenerates only the endpoints whose selectors see its identity", () => {
    const e = world();
    for (const p of cnp("api", "api", TO_FQDN)) e.upsertPolicy(p);
    for (const p of cnp("web", "web", TO_CIDR)) e.upsertPolicy(p);
    e.regenerate();
    e.observeDns({ name: "api.example.com", ips: ["198.51.100.7"] });
    assert.deepEqual(e.regenerate(), ["prod/api"]);
    assertFromScratch(e);
    // A name no selector asks for, at an address no CIDR covers: nothing to regenerate.
    e.observeDns({ name: "other.example.org", ips: ["198.51.100.8"] });
    assert.deepEqual(e.regenerate(), []);
    // The address expires for the name: api again, and only api.
    e.forgetDns("api.example.com", "198.51.100.7");
    assert.deepEqual(e.regenerate(), ["prod/api"]);
    assertFromScratch(e);
  });
});
