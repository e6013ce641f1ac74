/**
 * A DNS answer costs its addresses: the engine updates the FQDN identities of
 * the answered addresses only (OutsideIdentities.syncAddresses), and after any
 * sequence of answers, expiries and policy changes it holds what a whole
 * recomputation (a fork, which syncs every prefix) holds: the same prefixes
 * with identities of the same labels, and the same computed policies.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { prefixString } from "../../src/labels/cidr.js";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import type { DirectionPolicy } from "../../src/policy/resolve.js";
import type { PolicyResource } from "../../src/policy/types.js";

const NAMES = ["a.example.com", "b.example.com", "c.example.org"] as const;
/** Two spellings of one IPv6 address among them. */
const IPS = ["198.51.100.7", "198.51.100.8", "2001:db8::7", "2001:0db8:0::7", "203.0.113.9"] as const;

const cnp = (name: string, egress: string): PolicyResource[] =>
  parsePolicies(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: ${name}}}
  egress: [${egress}]
`,
    `${name}.yaml`,
  );

const POLICIES: readonly PolicyResource[][] = [
  cnp("api", `{toFQDNs: [{matchName: a.example.com}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}`),
  cnp("web", `{toFQDNs: [{matchPattern: "*.example.com"}]}`),
  // The same /32 a DNS answer teaches: one identity carries the CIDR and the names.
  cnp("db", `{toCIDR: [198.51.100.7/32, "2001:db8::7/128"]}`),
];

type Op =
  | { op: "learn"; name: number; ips: number[] }
  | { op: "forget"; name: number; ip: number }
  | { op: "pol"; i: number }
  | { op: "delPol"; i: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant("learn" as const),
    name: fc.nat(NAMES.length - 1),
    ips: fc.array(fc.nat(IPS.length - 1), { minLength: 1, maxLength: 3 }),
  }),
  fc.record({
    op: fc.constant("forget" as const),
    name: fc.nat(NAMES.length - 1),
    ip: fc.nat(IPS.length - 1),
  }),
  fc.record({ op: fc.constant("pol" as const), i: fc.nat(POLICIES.length - 1) }),
  fc.record({ op: fc.constant("delPol" as const), i: fc.nat(POLICIES.length - 1) }),
);

function world(): PolicyEngine {
  const e = new PolicyEngine();
  e.setNamespace("prod", {});
  for (const [i, app] of ["api", "web", "db"].entries())
    e.upsertEndpoint({ name: app, namespace: "prod", labels: { app }, ips: [`10.0.0.${i + 1}`] });
  return e;
}

function step(e: PolicyEngine, o: Op): void {
  if (o.op === "learn")
    e.observeDns({ name: NAMES[o.name] as string, ips: o.ips.map((i) => IPS[i] as string) });
  else if (o.op === "forget") e.forgetDns(NAMES[o.name] as string, IPS[o.ip] as string);
  else if (o.op === "pol") for (const p of POLICIES[o.i] ?? []) e.upsertPolicy(p);
  else for (const p of POLICIES[o.i] ?? []) e.deletePolicy(p.ref);
}

/**
 * Prefix entries with their identities' labels (local numbers depend on order). Not the entry's
 * source ("cidr" or "fqdn"): it was always the one of the change that last gave the prefix an
 * identity, and nothing reads it for prefixes.
 */
function prefixes(e: PolicyEngine): string[] {
  return [...e.ipcache.prefixEntries()]
    .map((x) => `${prefixString(x.prefix)} ${e.identity(x.identity)?.labels.toString() ?? "?"}`)
    .sort();
}

function entries(e: PolicyEngine, p: DirectionPolicy): string[] {
  const name = (id: number) => (id === 0 ? "any" : (e.identity(id)?.labels.toString() ?? `?${id}`));
  return [...p.mapState.entries()].map((x) => `${name(x.identity)} ${x.proto}:${x.lo}-${x.hi}`).sort();
}

describe("DNS-learned addresses are synced by address", () => {
  test("after every step of random answers, expiries and policy changes, the engine equals a whole recomputation", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), (ops) => {
        const e = world();
        for (const o of ops) {
          step(e, o);
          e.regenerate();
          const fresh = e.fork();
          fresh.regenerate();
          assert.deepEqual(prefixes(e), prefixes(fresh), JSON.stringify(o));
          for (const ep of e.listEndpoints()) {
            const got = e.endpointPolicy(ep.spec.namespace, ep.spec.name);
            const want = fresh.endpointPolicy(ep.spec.namespace, ep.spec.name);
            assert.deepEqual(
              entries(e, got.egress),
              entries(fresh, want.egress),
              `${ep.key} ${JSON.stringify(o)}`,
            );
          }
        }
      }),
      { seed: 20261204, numRuns: 200 },
    );
  });

  test("an expired answer for an address a CIDR rule names gives the prefix back its CIDR identity", () => {
    const e = world();
    for (const p of POLICIES[2] ?? []) e.upsertPolicy(p);
    const before = prefixes(e);
    e.observeDns({ name: "a.example.com", ips: ["198.51.100.7"] });
    assert.ok(prefixes(e).some((x) => x.startsWith("198.51.100.7/32 ") && x.includes("fqdn:a.example.com")));
    e.forgetDns("a.example.com", "198.51.100.7");
    assert.deepEqual(prefixes(e), before);
  });

  test("an answer for an address already learned under that name changes nothing", () => {
    const e = world();
    for (const p of POLICIES[0] ?? []) e.upsertPolicy(p);
    e.observeDns({ name: "a.example.com", ips: ["198.51.100.7"] });
    e.regenerate();
    const rev = e.ipcache.prefixRevision;
    const stats = e.stats;
    e.observeDns({ name: "a.example.com", ips: ["198.51.100.7"] });
    assert.deepEqual(e.regenerate(), []);
    assert.equal(e.ipcache.prefixRevision, rev);
    assert.equal(e.stats.selectorPolicies, stats.selectorPolicies);
  });
});
