/**
 * `policy test --datapath --nodes N` without the kernel: which node each
 * endpoint runs on, and every node's pod CIDRs (disjoint, each holding its
 * endpoints and none of the others').
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseScenario } from "../../src/policy/scenario/load.js";
import { placeEndpoints, type Placement } from "../../src/scenario/datapath-placement.js";
import { planQuery } from "../../src/scenario/datapath-plan.js";
import { ScenarioSession } from "../../src/policy/scenario/session.js";
import { containsAddr, parsePrefix } from "../../src/labels/cidr.js";

function scenario(
  endpoints: string,
  queries = "  - {from: a, to: b, proto: TCP, port: 80, expect: allow}",
  extra = "",
) {
  return parseScenario(`name: p\n${extra}endpoints:\n${endpoints}\nqueries:\n${queries}\n`, "p.yaml");
}

const ep = (name: string, ip: string, v6?: string): string =>
  `  - {name: ${name}, namespace: default, labels: {app: ${name}}, ip: ${ip}${v6 ? `, ipv6: "${v6}"` : ""}}`;

function placed(p: Placement | { skip: string }): Placement {
  if ("skip" in p) throw new Error(`skipped: ${p.skip}`);
  return p;
}

/** Node of each endpoint, in file order. */
const nodesOf = (p: Placement, names: string[]): number[] =>
  names.map((n) => p.nodeOf.get(`default/${n}`) ?? -1);

/** Every endpoint's addresses are in its node's CIDRs and in no other node's. */
function assertHeld(p: Placement, eps: [string, string[]][]): void {
  for (const [name, ips] of eps) {
    const mine = p.nodeOf.get(`default/${name}`) ?? -1;
    for (const ip of ips) {
      p.nodes.forEach((c, i) => {
        const held = [c.podCidr4, c.podCidr6].some((x) => {
          const pre = x === undefined ? undefined : parsePrefix(x);
          return pre !== undefined && containsAddr(pre, ip);
        });
        assert.equal(
          held,
          i === mine,
          `${name} ${ip} in node ${i}'s CIDRs (${c.podCidr4} ${c.podCidr6 ?? ""})`,
        );
      });
    }
  }
}

describe("datapath placement on several nodes", () => {
  test("addresses in blocks of their own alternate exactly in file order, each node a /24", () => {
    const s = scenario(
      [ep("a", "10.0.1.10"), ep("b", "10.0.2.10"), ep("c", "10.0.1.20"), ep("d", "10.0.2.20")].join("\n"),
    );
    const p = placed(placeEndpoints(s, 2));
    assert.deepEqual(nodesOf(p, ["a", "b", "c", "d"]), [0, 1, 0, 1]);
    assert.deepEqual(
      p.nodes.map((c) => [c.podCidr4, c.gateway4]),
      [
        ["10.0.1.0/24", "10.0.1.1"],
        ["10.0.2.0/24", "10.0.2.1"],
      ],
    );
  });

  test("interleaved addresses (star wars: .10 .20 .30): as close to alternation as disjoint CIDRs allow", () => {
    const s = scenario(
      [ep("deathstar", "10.0.1.10"), ep("tiefighter", "10.0.1.20"), ep("xwing", "10.0.1.30")].join("\n"),
      "  - {from: tiefighter, to: deathstar, proto: TCP, port: 80, expect: allow}",
    );
    const p = placed(placeEndpoints(s, 2));
    assert.deepEqual(nodesOf(p, ["deathstar", "tiefighter", "xwing"]), [0, 1, 1]);
    assert.deepEqual(
      p.nodes.map((c) => c.podCidr4),
      ["10.0.1.0/28", "10.0.1.16/28"],
    );
    assertHeld(p, [
      ["deathstar", ["10.0.1.10"]],
      ["tiefighter", ["10.0.1.20"]],
      ["xwing", ["10.0.1.30"]],
    ]);
  });

  test("addresses that cannot be split into disjoint blocks of 4: skipped with the reason", () => {
    const s = scenario([ep("a", "10.0.1.10"), ep("b", "10.0.1.11")].join("\n"));
    const p = placeEndpoints(s, 2);
    assert.ok("skip" in p);
    assert.match(
      p.skip,
      /cannot place the endpoints on 2 nodes: their addresses \(10\.0\.1\.10, 10\.0\.1\.11\)/,
    );
  });

  test("a node's network, gateway and last address are never an endpoint's", () => {
    // .17 would be the gateway of 10.0.1.16/28: the split must be another one.
    const s = scenario([ep("a", "10.0.1.10"), ep("b", "10.0.1.17")].join("\n"));
    const p = placeEndpoints(s, 2);
    if ("skip" in p) return; // no valid split is fine too; a wrong one is not
    for (const [i, c] of p.nodes.entries()) {
      const mine = [...p.nodeOf]
        .filter(([, n]) => n === i)
        .map(([k]): string => (k === "default/a" ? "10.0.1.10" : "10.0.1.17"));
      assert.ok(!mine.includes(c.gateway4), `${c.gateway4} is node ${i}'s gateway`);
    }
  });

  test("dual stack: both families split the same way; IPv6 blocks are /64 where the addresses allow", () => {
    const s = scenario(
      [ep("a", "10.0.1.10", "fd00:0:0:1::10"), ep("b", "10.0.1.20", "fd00:0:0:2::10")].join("\n"),
      undefined,
      "config: {dualStack: true}\n",
    );
    const p = placed(placeEndpoints(s, 2));
    assert.deepEqual(nodesOf(p, ["a", "b"]), [0, 1]);
    assert.deepEqual(
      p.nodes.map((c) => c.podCidr6),
      ["fd00:0:0:1::/64", "fd00:0:0:2::/64"],
    );
    assertHeld(p, [
      ["a", ["10.0.1.10", "fd00:0:0:1::10"]],
      ["b", ["10.0.1.20", "fd00:0:0:2::10"]],
    ]);
  });

  test("fewer endpoints than nodes: one node per endpoint; three nodes alternate too", () => {
    const one = placed(
      placeEndpoints(
        scenario(
          ep("a", "10.0.1.10"),
          "  - {from: a, to: 'world:1.1.1.1', proto: TCP, port: 80, expect: allow}",
        ),
        2,
      ),
    );
    assert.equal(one.nodes.length, 1);
    const s = scenario([ep("a", "10.0.1.10"), ep("b", "10.0.2.10"), ep("c", "10.0.3.10")].join("\n"));
    assert.deepEqual(nodesOf(placed(placeEndpoints(s, 3)), ["a", "b", "c"]), [0, 1, 2]);
  });

  test("an endpoint's host is its own node: the query to host goes to that node's gateway", () => {
    const s = scenario(
      [ep("a", "10.0.1.10"), ep("b", "10.0.2.10")].join("\n"),
      "  - {from: b, to: host, proto: TCP, port: 22, expect: allow}",
    );
    const p = placed(placeEndpoints(s, 2));
    const session = new ScenarioSession({ world: s });
    const q = s.queries[0];
    assert.ok(q);
    const d = session.engine.decide(session.prepare(q, { file: s.file, prefix: "" }));
    const plan = planQuery(q, d, {
      scenario: s,
      cidrs: p.nodes[0] ?? assert.fail(),
      nodes: { cidrs: p.nodes, nodeOf: (k) => p.nodeOf.get(k) ?? 0 },
    });
    assert.ok(!("skip" in plan));
    assert.equal(plan.address, "10.0.2.1");
  });
});
