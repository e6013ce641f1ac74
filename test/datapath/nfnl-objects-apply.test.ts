/**
 * The Reconciler with endpoint objects over nfnetlink (nfnl/objects.ts):
 * endpoints created, changed and deleted in a table of many run no `nft`
 * process, the kernel then equals a from-scratch compile and carries the same
 * stamp the nft path writes; real connections are decided through
 * nfnl-created objects exactly as through nft-created ones.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { runRaw } from "../../src/datapath/exec.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import type { DatapathEndpoint, DatapathState, PolicySegment } from "../../src/datapath/types.js";
import { Lab, rootSkipReason } from "./harness.js";

const skip = rootSkipReason();

const seg = (
  identity: number,
  proto: number,
  lo: number,
  hi: number,
  action: PolicySegment["action"] = "allow",
  ruleId = 1,
): PolicySegment => ({ identity, proto, lo, hi, action, ruleId });

describe("nfnl objects through the Reconciler (root)", { skip: skip ?? false }, () => {
  const prefix = "mh3" + randomBytes(3).toString("hex");
  let node: NamedNodeNetns;
  before(async () => {
    node = await createNode({ netns: `${prefix}-node` });
  });
  after(async () => {
    await cleanupPrefix(prefix + "-");
  });

  test("after its first apply the Reconciler's nfnetlink writer already runs in the node namespace", async () => {
    const writers = async (): Promise<number> => {
      const r = await runRaw(["ip", "netns", "pids", node.netns], {});
      let n = 0;
      for (const pid of r.stdout.split("\n").filter((l) => /^\d+$/.test(l))) {
        const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
        if (cmd.includes("nfnl/child.js") || cmd.includes("membrane-nfnl")) n++;
      }
      return n;
    };
    const r = new Reconciler({ netns: node.netns, table: "ow" });
    try {
      assert.equal(await writers(), 0);
      await r.apply({ hostIdentity: 1, ipcache: [], endpoints: [], rules: [] });
      // The first endpoint created after this does not wait for a Node process to boot.
      // (`ip netns exec` enters the namespace just after it starts: poll, 5 s as a safety net.)
      let n = await writers();
      for (let i = 0; i < 50 && n === 0; i++) {
        await new Promise((res) => setTimeout(res, 100));
        n = await writers();
      }
      assert.equal(n, 1);
    } finally {
      r.stop();
    }
  });

  test("creating, changing and deleting an endpoint in a table of 60 runs no nft process; the stamp is the nft path's", async () => {
    const ep = (id: number, deny = false): DatapathEndpoint => ({
      id,
      name: `ep${id}`,
      hostIfname: `mh3v${id}`,
      ipv4: `10.88.0.${id}`,
      ipv6: `fd00:88::${id.toString(16)}`,
      identity: 2000 + id,
      ingress: {
        enforced: true,
        segments: [seg(2001, 6, 80, 80), seg(0, 1, 8, 8), ...(deny ? [seg(2002, 6, 22, 22, "deny", 2)] : [])],
      },
      egress: { enforced: false, auditDefault: true, segments: [seg(0, 17, 53, 53, "audit", 3)] },
    });
    const state = (eps: DatapathEndpoint[]): DatapathState => ({
      hostIdentity: 1,
      ipcache: [{ prefix: "10.88.0.0/24", identity: 9 }],
      endpoints: eps,
      rules: [
        { id: 1, text: "default/allow-web spec.ingress[0]" },
        { id: 2, text: 'default/deny-ssh "quoted"' },
        { id: 3, text: "audit/dns" },
      ],
    });
    const sixty = Array.from({ length: 60 }, (_, i) => ep(i + 1));
    const r = new Reconciler({ netns: node.netns, table: "oa" });
    try {
      await r.apply(state(sixty));
      const before = { ...r.stats };
      // Created: its chains, maps, rules, map elements and dispatch elements.
      const created = [...sixty, ep(61)];
      assert.ok((await r.apply(state(created))).ops > 0);
      // Changed: a deny rule adds a chain and an element.
      const changed = created.map((e) => (e.id === 5 ? ep(5, true) : e));
      assert.ok((await r.apply(state(changed))).ops > 0);
      // Deleted.
      const deleted = changed.filter((e) => e.id !== 7);
      assert.ok((await r.apply(state(deleted))).ops > 0);
      assert.equal(r.stats.nft, before.nft, "no nft process");
      assert.equal(r.stats.nfnl, before.nfnl + 3, "three nfnetlink batches");
      // The kernel is what a from-scratch compile plans, and verify() finds no drift.
      const fresh = new Reconciler({ netns: node.netns, table: "oa", trustMs: 0 });
      assert.deepEqual((await fresh.plan(state(deleted))).lines, []);
      assert.equal((await r.verify()).drift, 0);
      // A restarted agent adopts the table by its stamp: the digest is what the nft path computes.
      const restarted = new Reconciler({ netns: node.netns, table: "oa" });
      try {
        assert.equal((await restarted.apply(state(deleted))).ops, 0);
        assert.equal(restarted.stats.adopted, 1);
        assert.equal(restarted.stats.readBacks, 0);
      } finally {
        restarted.stop();
      }
    } finally {
      r.stop();
    }
  });
});

describe("nfnl objects: packets (root: netns, nftables, real connections)", { skip: skip ?? false }, () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create(
      "mh3",
      [
        { name: "a", id: 1, identity: 1001 },
        { name: "b", id: 2, identity: 1002 },
        { name: "c", id: 3, identity: 1003 },
      ],
      { tcp: [80, 81] },
    );
  });
  after(async () => {
    await lab?.destroy();
  });

  test("connections to and from an endpoint created through nfnl are decided as with nft-created objects", async () => {
    const full = lab.state({
      c: {
        ingress: {
          enforced: true,
          segments: [
            seg(1001, 6, 80, 80),
            seg(1001, 1, 8, 8),
            seg(1001, 58, 128, 128),
            seg(1002, 6, 81, 81, "deny", 2),
          ],
        },
        egress: { enforced: true, segments: [seg(1002, 6, 80, 80), seg(0, 6, 81, 81, "audit", 3)] },
      },
    });
    full.rules = [
      { id: 1, text: "c/allow-a" },
      { id: 2, text: "c/deny-b" },
      { id: 3, text: "c/audit" },
    ];
    // The ipcache (global part) is the same in both states: only endpoint c comes and goes.
    const withoutC = { ...full, endpoints: full.endpoints.filter((e) => e.name !== "c") };
    const probe = async (): Promise<string[]> => {
      const a = lab.ep("a");
      const b = lab.ep("b");
      const c = lab.ep("c");
      const out: string[] = [];
      for (const fam of ["ipv4", "ipv6"] as const) {
        out.push(
          `a->c:80 ${await a.tcp(c[fam], 80)}`,
          `a->c:81 ${await a.tcp(c[fam], 81)}`,
          `b->c:80 ${await b.tcp(c[fam], 80)}`,
          `b->c:81 ${await b.tcp(c[fam], 81)}`,
          `a ping c ${await a.ping(c[fam])}`,
          `b ping c ${await b.ping(c[fam])}`,
          `c->b:80 ${await c.tcp(b[fam], 80)}`,
          `c->a:80 ${await c.tcp(a[fam], 80)}`,
          `c->a:81 ${await c.tcp(a[fam], 81)}`,
        );
      }
      return out;
    };
    const r = lab.reconciler;
    await r.apply(withoutC);
    const open = await probe();
    const before = { ...r.stats };
    await r.apply(full);
    assert.equal(r.stats.nft, before.nft, "c's objects were created without nft");
    const viaNfnl = await probe();
    await r.apply(withoutC);
    assert.equal(r.stats.nft, before.nft, "and deleted without nft");
    assert.deepEqual(await probe(), open, "c is open again once its objects are gone");
    // The same state written whole by nft.
    await r.deleteTable();
    const viaNft = new Reconciler({ netns: lab.node.netns, table: "membrane", trustMs: 0 });
    try {
      await viaNft.apply(full);
      assert.equal(viaNft.stats.nfnl, 0);
      assert.deepEqual(await probe(), viaNfnl);
    } finally {
      viaNft.stop();
    }
    // Not vacuous: c's policy decides.
    const ok = viaNfnl.filter((l) => / ok$/.test(l)).map((l) => l.replace(/ ok$/, ""));
    assert.deepEqual(
      ok.slice(0, ok.length / 2),
      ["a->c:80", "a ping c", "c->b:80", "c->a:81"],
      viaNfnl.join("\n"),
    );
  });
});
