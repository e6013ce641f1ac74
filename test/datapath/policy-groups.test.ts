/**
 * Policy groups (src/datapath/policy-groups.ts): endpoints with the same compiled
 * policy share one group's chains and maps; a change that moves all of a group's
 * members the same way is one element delta of that group; every incremental
 * change equals a from-scratch compile (names included) and keeps the stamp.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileAll } from "../../src/datapath/compile.js";
import { appliedFromFull, planIncremental, type Applied } from "../../src/datapath/incremental.js";
import { asActual, plan } from "../../src/datapath/plan.js";
import type {
  DatapathEndpoint,
  DatapathState,
  DirectionPolicy,
  PolicySegment,
} from "../../src/datapath/types.js";

const opts = { table: "mt", logGroup: 4 };
const allow = (identity: number, port: number, ruleId = 1): PolicySegment => ({
  identity,
  proto: 6,
  lo: port,
  hi: port,
  action: "allow",
  ruleId,
});
/** The db policy of the scale bench: 12 identities on one port. */
const db = (port: number): DirectionPolicy => ({
  enforced: true,
  segments: Array.from({ length: 12 }, (_, k) => allow(300 + k, port)),
});
const web: DirectionPolicy = { enforced: true, segments: [allow(400, 80, 2)] };
const open: DirectionPolicy = { enforced: false, segments: [] };

const ep = (id: number, ingress: DirectionPolicy, egress: DirectionPolicy = open): DatapathEndpoint => ({
  id,
  name: `ep${id}`,
  hostIfname: `mbrg${id}`,
  ipv4: `10.77.${id >> 8}.${id & 255}`,
  identity: 1000,
  ingress,
  egress,
});
const state = (endpoints: DatapathEndpoint[]): DatapathState => ({
  ipcache: [],
  endpoints,
  rules: [
    { id: 1, text: "default/db spec.ingress[0]" },
    { id: 2, text: "default/web spec.ingress[0]" },
  ],
  hostIdentity: 1,
});

function start(s: DatapathState): Applied {
  const full = compileAll(s, opts);
  assert.ok(full.digest);
  return appliedFromFull(s, full.parts, full.groups, opts, full.digest);
}

/** Applies `next` incrementally: its changes must be those of two from-scratch compiles, and the stamp theirs. */
function step(applied: Applied, from: DatapathState, next: DatapathState): string[] {
  const p = planIncremental(applied, next, opts);
  assert.ok(p, "planned incrementally");
  const truth = plan(compileAll(next, opts).table, asActual(compileAll(from, opts).table));
  assert.deepEqual([...p.plan.lines].sort(), [...truth.lines].sort(), "the same change as from scratch");
  p.commit();
  assert.equal(
    applied.digest.total,
    compileAll(next, opts).digest?.total,
    "the stamp of a from-scratch compile",
  );
  return p.plan.lines;
}

const names = (lines: readonly string[], re: RegExp): string[] => [
  ...new Set(lines.map((l) => re.exec(l)?.[1]).filter((x): x is string => x !== undefined)),
];

describe("policy groups", () => {
  test("endpoints with the same policy share one group's maps and chains; each endpoint keeps its own chain", () => {
    const eps = [ep(1, db(5432)), ep(2, db(5432)), ep(3, web), ep(4, db(5432)), ep(5, web)];
    const { table } = compileAll(state(eps), opts);
    const maps = table.maps.map((m) => m.name).filter((n) => /^[eg]\d/.test(n));
    assert.deepEqual(maps.sort(), ["g1_in_id", "g3_in_id"], "one map per distinct policy, not per endpoint");
    const chain = (name: string): string[] | undefined => table.chains.find((c) => c.name === name)?.rules;
    for (const id of [1, 2, 4]) assert.equal(chain(`e${id}_in`)?.at(-1), "goto g1_in");
    for (const id of [3, 5]) assert.equal(chain(`e${id}_in`)?.at(-1), "goto g3_in");
    // Open egress (no segment, not enforced): no group; the endpoint's chain ends with its own checks.
    assert.equal(chain("e1_out")?.at(-1)?.startsWith("ct state invalid"), true);
  });

  test("two endpoints of one identity whose named ports resolve differently do not share", () => {
    // Same identity and policy, but the named port "http" is 8080 on one and 9090 on the other.
    const { table } = compileAll(state([ep(1, db(8080)), ep(2, db(9090))]), opts);
    const map = (name: string): string[] =>
      table.maps.find((m) => m.name === name)?.elements.map((e) => String((e.key[2] as { lo: bigint }).lo)) ??
      [];
    assert.deepEqual(new Set(map("g1_in_id")), new Set(["8080"]));
    assert.deepEqual(new Set(map("g2_in_id")), new Set(["9090"]));
  });

  test("a change moving every member of a group the same way is one element delta of the group: no endpoint chain, no map created", () => {
    const ids = Array.from({ length: 50 }, (_, i) => i + 1);
    const before = state(ids.map((id) => ep(id, id % 5 === 1 ? db(5432) : web)));
    const applied = start(before);
    const after = state(ids.map((id) => ep(id, id % 5 === 1 ? db(5433) : web)));
    const lines = step(applied, before, after);
    assert.deepEqual(names(lines, /^[~+-] (?:element|chain|map) (\S+)/), ["g1_in_id"], lines.join("\n"));
    assert.equal(lines.length, 24, "12 elements out, 12 in: once, for the 10 endpoints of the group");
  });

  test("an endpoint that diverges joins an existing group or founds one; a group without members goes", () => {
    const before = state([ep(1, db(5432)), ep(2, db(5432)), ep(3, web), ep(4, db(5432))]);
    const applied = start(before);
    // 4 joins 3's group (web): no map or verdict chain is created, its chain goes to g3_in.
    const s1 = state([ep(1, db(5432)), ep(2, db(5432)), ep(3, web), ep(4, web)]);
    const l1 = step(applied, before, s1);
    assert.deepEqual(l1, ["~ chain e4_in (3 rules)"]);
    // 3 founds a group of its own; 4, now the smallest of web's, names that group g4. The
    // name g3 stays with 3, whose new policy replaces the old in place.
    const s2 = state([ep(1, db(5432)), ep(2, db(5432)), ep(3, db(7000)), ep(4, web)]);
    const l2 = step(applied, s1, s2);
    assert.ok(l2.includes("+ map g4_in_id") && !l2.includes("- map g3_in_id"), l2.join("\n"));
    assert.ok(!l2.some((l) => l.startsWith("~ chain e3_in")), "3's chain still goes to g3_in");
    // 3 goes: its group has no member left, and goes too (maps and chains).
    const s3 = state([ep(1, db(5432)), ep(2, db(5432)), ep(4, web)]);
    const l3 = step(applied, s2, s3);
    assert.ok(l3.includes("- map g3_in_id") && l3.includes("- chain g3_in"), l3.join("\n"));
  });

  test("the smallest member leaving renames the group in one batch, the same as from scratch", () => {
    const before = state([ep(1, db(5432)), ep(2, db(5432)), ep(3, db(5432))]);
    const applied = start(before);
    const lines = step(applied, before, state([ep(2, db(5432)), ep(3, db(5432))]));
    assert.ok(lines.includes("+ chain g2_in (2 rules)") && lines.includes("- chain g1_in"), lines.join("\n"));
    assert.ok(lines.includes("~ chain e3_in (3 rules)"));
  });

  test("random moves between a few policies stay equal to a from-scratch compile, stamp included", () => {
    let seed = 7;
    const r = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0), seed / 2 ** 32);
    const policies = [db(5432), db(5433), web, open, { enforced: true, segments: [] }];
    const pick = (): DirectionPolicy => policies[Math.floor(r() * policies.length)] as DirectionPolicy;
    let cur = state(Array.from({ length: 12 }, (_, i) => ep(i + 1, pick(), pick())));
    const applied = start(cur);
    for (let i = 0; i < 60; i++) {
      const eps = cur.endpoints
        .filter(() => r() > 0.08)
        .map((e) => (r() < 0.3 ? ep(e.id, pick(), pick()) : e));
      if (r() < 0.3) eps.push(ep(13 + i, pick(), pick()));
      // Sometimes a whole group moves together.
      const next =
        r() < 0.3 ? eps.map((e) => (e.ingress === policies[0] ? { ...e, ingress: db(6000 + i) } : e)) : eps;
      step(applied, cur, state(next));
      cur = state(next);
    }
  });
});
