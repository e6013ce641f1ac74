// `membrane demo --nodes 3` (root, etcd): the real CLI as a child process starts etcd and three
// agent processes, spreads the ships over the nodes, applies rule1 once and shows cross-node
// traffic allowed and dropped, flows naming both sides' nodes, why the xwing was dropped
// (naming rule1); afterwards no namespace, agent or etcd of the run is left. Bad --nodes values
// are refused before anything starts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { cli } from "./run-cli.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces, nftables)" : skipWithoutEtcd();

test(
  "membrane demo --nodes 3: the ships on three nodes, rule1 applied once, cross-node traffic allowed and dropped with node names in the flows; nothing left",
  { skip, timeout: 300_000 },
  () => {
    const r = spawnSync(process.execPath, ["bin/membrane.js", "demo", "--nodes", "3"], {
      encoding: "utf8",
      timeout: 280_000,
    });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const out = r.stdout;
    const prefix = /scratch namespaces (mbd[0-9a-f]{4})-\*/.exec(out)?.[1];
    assert.ok(prefix, out);
    // Progress while it starts.
    assert.match(out, /etcd ready on https:\/\/127\.0\.0\.1:\d+ \(TLS, client certificates required\)/);
    for (const n of ["n1", "n2", "n3"]) assert.match(out, new RegExp(`node ${n} ready: sees n1, n2, n3`));
    // The ships spread over the nodes.
    assert.match(out, /default\/deathstar\s+n1\s/);
    assert.match(out, /default\/tiefighter\s+n2\s/);
    assert.match(out, /default\/xwing\s+n3\s/);
    // Applied once, through n1, realized by every node.
    assert.match(out, /apply rule1 ONCE, through n1/);
    assert.match(out, /stored in etcd at revision \d+, realized by n1, n2, n3/);
    const step3 = out.slice(out.indexOf("Step 3"));
    assert.match(step3, /tiefighter \(n2\)\s+deathstar:80\/TCP \(n1\)\s+reached/);
    assert.match(step3, /xwing \(n3\)\s+deathstar:80\/TCP \(n1\)\s+DROPPED/);
    assert.match(step3, /tiefighter \(n2\)\s+deathstar:8080\/TCP \(n1\)\s+DROPPED/);
    // n1's flows: the sender's node and the receiver's, the policy that allowed, the drop.
    assert.match(
      step3,
      /\(ID:\d+\) on n2 -> default\/deathstar:80 \(ID:\d+\) on n1 policy-verdict:\S+ INGRESS ALLOWED .*by default\/rule1 spec\.ingress\[0\]/,
    );
    assert.match(step3, /\(ID:\d+\) on n3 -> default\/deathstar:80 \(ID:\d+\) on n1 .*INGRESS DENIED/);
    // Why: the policy named, the xwing by its labels, an allow proposed.
    assert.match(step3, /default deny \(default\/rule1 selecting default\/deathstar has ingress rules\)/);
    assert.match(step3, /a pod of default on another node: org=alliance,class=xwing/);
    assert.match(out, /Kernel vs desired state: in sync on 3 of 3 nodes/);
    assert.match(out, /Every attempt ended as Cilium would have it\./);
    assert.match(out, /cleaned up: agents and etcd stopped/);
    // Nothing left: namespaces, agents (their arguments name the prefix), etcd's data dir.
    const netns = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
    assert.ok(!netns.includes(prefix), `namespaces of ${prefix} left behind:\n${netns}`);
    const ps = spawnSync("ps", ["-eo", "stat=,args="], { encoding: "utf8" }).stdout;
    const live = ps.split("\n").filter((l) => l.includes(prefix) && !l.trim().startsWith("Z"));
    assert.deepEqual(live, [], "no process of the run");
  },
);

test("membrane demo --nodes: a value out of 1..5, or --keep with several nodes, is refused naming it, before anything starts", () => {
  for (const bad of ["0", "6", "two", "-1"]) {
    const r = cli("demo", "--nodes", bad);
    assert.notEqual(r.code, 0, bad);
    assert.match(r.stderr, /--nodes .*give a whole number from 1 to 5/, bad);
  }
  const keep = cli("demo", "--nodes", "2", "--keep");
  assert.notEqual(keep.code, 0);
  assert.match(keep.stderr, /--keep works with one node only/);
});

for (const at of ["node n1:", "Endpoints,"]) {
  test(
    `membrane demo --nodes 2: Ctrl-C ${at === "Endpoints," ? "once the nodes run" : "while the agents start"} removes everything and exits 130`,
    { skip, timeout: 200_000 },
    async () => {
      const p = spawn(process.execPath, ["bin/membrane.js", "demo", "--nodes", "2"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let sent = false;
      p.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (!sent && out.includes(at)) {
          sent = true;
          p.kill("SIGINT");
        }
      });
      p.stderr.on("data", (d: Buffer) => (out += d.toString()));
      const code = await new Promise((r) => p.on("exit", (c, s) => r(c ?? s)));
      assert.equal(code, 130, out);
      assert.match(out, /interrupted: cleaning up .*\n[^]*cleaned up: agents and etcd stopped/);
      const prefix = /scratch namespaces (mbd[0-9a-f]{4})-\*/.exec(out)?.[1];
      assert.ok(prefix, out);
      const netns = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
      assert.ok(!netns.includes(prefix), `namespaces of ${prefix} left behind:\n${netns}`);
      const ps = spawnSync("ps", ["-eo", "stat=,args="], { encoding: "utf8" }).stdout;
      assert.deepEqual(
        ps.split("\n").filter((l) => l.includes(prefix) && !l.trim().startsWith("Z")),
        [],
        "no process of the run",
      );
    },
  );
}
