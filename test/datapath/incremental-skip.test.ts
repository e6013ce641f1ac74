/**
 * planIncremental with the endpoint list applied last (no root: planning only):
 * a frozen list that is the same object cannot have changed, so an ipcache change
 * looks at no endpoint, however many; a list that is not frozen, or changed rule
 * texts, are still looked at endpoint by endpoint. Every plan equals the difference
 * of two from-scratch compiles.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileAll } from "../../src/datapath/compile.js";
import { appliedFromFull, planIncremental, type Applied } from "../../src/datapath/incremental.js";
import { asActual, plan } from "../../src/datapath/plan.js";
import type { DatapathEndpoint, DatapathState } from "../../src/datapath/types.js";
import { HostTable } from "../../src/ipcache/hosts.js";

const opts = { table: "membrane", logGroup: 1 };

const ep = (id: number): DatapathEndpoint => ({
  id,
  name: `ep${id}`,
  hostIfname: `veth${id}`,
  ipv4: `10.1.${id >> 8}.${id & 255}`,
  identity: 1000 + id,
  ingress: {
    enforced: true,
    segments: [{ identity: 2000, proto: 6, lo: 80, hi: 80, action: "allow", ruleId: 1 }],
  },
  egress: { enforced: false, segments: [] },
});

function world(n: number, freeze: boolean) {
  const hosts = new HostTable();
  hosts.set("10.9.0.1", 2000);
  const list = Array.from({ length: n }, (_, i) => ep(i + 1));
  const endpoints = freeze ? (Object.freeze(list) as DatapathEndpoint[]) : list;
  const state = (ruleText = "default/r1 ingress[0]"): DatapathState => ({
    ipcache: [],
    hosts,
    endpoints,
    rules: [{ id: 1, text: ruleText }],
    hostIdentity: 1,
  });
  const full = compileAll(state(), opts);
  assert.ok(full.digest);
  const applied: Applied = appliedFromFull(state(), full.parts, full.groups, opts, full.digest);
  // The truth: a from-scratch compile of `before` and `after` (hosts are read when compiled).
  const before = compileAll(state(), opts).table;
  return { hosts, state, applied, before };
}

describe("incremental plan with the list applied last", () => {
  test("an ipcache change with the frozen list applied last looks at no endpoint and equals a from-scratch diff", () => {
    const w = world(200, true);
    w.hosts.set("10.9.0.2", 2001);
    const p = planIncremental(w.applied, w.state(), opts);
    assert.ok(p);
    assert.equal(p.endpointsChecked, 0);
    assert.equal(p.plan.ops, 1);
    assert.deepEqual(
      p.plan.lines.sort(),
      plan(compileAll(w.state(), opts).table, asActual(w.before)).lines.sort(),
    );
    p.commit();
    // And the next change as well (the list was committed with the change).
    w.hosts.delete("10.9.0.1");
    const q = planIncremental(w.applied, w.state(), opts);
    assert.equal(q?.endpointsChecked, 0);
    assert.equal(q?.plan.ops, 1);
  });

  test("the same list not frozen (it may have changed in place) is looked at endpoint by endpoint", () => {
    const w = world(50, false);
    w.hosts.set("10.9.0.2", 2001);
    assert.equal(planIncremental(w.applied, w.state(), opts)?.endpointsChecked, 50);
  });

  test("a rule text changed under the same frozen list recompiles the endpoints that use it", () => {
    const w = world(20, true);
    const next = w.state("default/r1-renamed ingress[0]");
    const p = planIncremental(w.applied, next, opts);
    assert.ok(p);
    assert.equal(p.endpointsChecked, 20);
    const truth = plan(compileAll(next, opts).table, asActual(w.before)).lines.sort();
    assert.ok(truth.length > 0, "the rule text is in the endpoints' chains");
    assert.deepEqual(p.plan.lines.sort(), truth);
  });
});
