/**
 * Property: on random worlds and random L3/L4 policies, the real engine
 * (SelectorCache + MapState) decides every flow exactly as the naive
 * reference evaluator (test/policy/reference/reference.ts) does.
 *
 * Reproduce a failure with the seed it prints:
 *   MEMBRANE_PROPERTY_SEED=<seed> node --test dist/test/policy/property.test.js
 * More runs: MEMBRANE_PROPERTY_RUNS=3000.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { referenceDecide } from "./reference/reference.js";
import { worldArb } from "./reference/gen.js";
import { buildEngine, buildPolicies, buildReference, refQuery } from "./reference/build.js";
import { firstDisagreement } from "./reference/compare.js";

const SEED = Number(process.env["MEMBRANE_PROPERTY_SEED"] ?? 20240607);
const RUNS = Number(process.env["MEMBRANE_PROPERTY_RUNS"] ?? 300);

test("the engine decides L3/L4 flows as the naive reference evaluator does on random policies", () => {
  try {
    fc.assert(
      fc.property(worldArb, (w) => {
        const d = firstDisagreement(w);
        if (d !== undefined) throw new Error(d);
      }),
      { seed: SEED, numRuns: RUNS, includeErrorInReport: true },
    );
  } catch (e) {
    console.error(`property failed with MEMBRANE_PROPERTY_SEED=${SEED} (runs ${RUNS})`);
    throw e;
  }
});

test("the random worlds exercise denies, CIDR excepts, ranges, ICMP and every enforcement mode", () => {
  // A property test is only as good as its generator: count what it produced.
  const seen = {
    deny: 0,
    except: 0,
    range: 0,
    icmp: 0,
    always: 0,
    never: 0,
    nodes: 0,
    allowed: 0,
    denied: 0,
  };
  fc.assert(
    fc.property(worldArb, (w) => {
      const policies = buildPolicies(w);
      const { ids } = buildEngine(w, policies);
      const world = buildReference(w, policies, ids);
      for (const p of policies) {
        for (const r of p.rules) {
          if (r.ingressDeny.length + r.egressDeny.length > 0) seen.deny++;
          if (r.selectsNodes) seen.nodes++;
          for (const el of [...r.ingress, ...r.egress, ...r.ingressDeny, ...r.egressDeny]) {
            if (el.peers.some((x) => x.kind === "cidr" && x.except.length > 0)) seen.except++;
            if (el.ports?.some((pr) => pr.ports.some((pp) => pp.endPort > pp.port))) seen.range++;
            if (el.icmps) seen.icmp++;
          }
        }
      }
      if (w.config.policyEnforcementMode === "always") seen.always++;
      if (w.config.policyEnforcementMode === "never") seen.never++;
      for (const q of w.queries) {
        if (referenceDecide(world, policies, refQuery(world, q)).verdict === "allow") seen.allowed++;
        else seen.denied++;
      }
    }),
    { seed: SEED, numRuns: 100 },
  );
  for (const [k, n] of Object.entries(seen)) assert.ok(n >= 5, `only ${n} worlds/queries with ${k}`);
});
