/**
 * The pool of endpoint namespaces made ahead of time (needs root): what a
 * pooled namespace holds (nothing but a down `lo`), which ids it takes,
 * that a create from it spawns no process and still fails closed and
 * leaves nothing behind, and that stop and start clean up.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readlinkSync, statSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { createNode, prepareEndpoint, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { EndpointPool } from "../../src/datapath/endpoint-pool.js";
import { run } from "../../src/datapath/exec.js";
import { cleanupPrefix, listNetns } from "../../src/datapath/netns.js";
import { linkStates } from "../../src/datapath/rtnl.js";
import { rootSkipReason } from "./harness.js";
import { spawned } from "./spawn-spy.js";

const skip = rootSkipReason();
const prefixOf = (): string => `mx2${randomBytes(2).toString("hex")}p`;

const ours = async (prefix: string): Promise<string[]> =>
  (await listNetns()).filter((n) => n.startsWith(prefix));

/** Pids of the processes whose network namespace is the one with inode `ino`. */
function holders(ino: number): number[] {
  const out: number[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/net`) === `net:[${ino}]`) out.push(Number(pid));
    } catch {
      // gone, or a kernel thread
    }
  }
  return out;
}

async function withPrefix(f: (prefix: string) => Promise<void>): Promise<void> {
  const prefix = prefixOf();
  try {
    await f(prefix);
  } finally {
    await cleanupPrefix(prefix);
  }
}

describe("endpoint namespace pool (root)", { skip: skip ?? false }, () => {
  test("a started pool makes `size` namespaces with the lowest free ids, holding nothing but a down lo", async () => {
    await withPrefix(async (prefix) => {
      const pool = new EndpointPool({ netnsPrefix: `${prefix}-`, size: 2, used: (id) => id === 1 });
      try {
        await pool.start();
        assert.deepEqual(pool.readyIds(), [2, 3]);
        assert.deepEqual(await ours(prefix), [`${prefix}-ep2`, `${prefix}-ep3`]);
        for (const ns of [`${prefix}-ep2`, `${prefix}-ep3`]) {
          assert.deepEqual([...(await linkStates(ns))], [["lo", { up: false }]], ns);
          const routes = await run(["ip", "-n", ns, "-o", "route", "show", "table", "all"]);
          assert.equal(routes.trim(), "", `${ns} has no route`);
          const dad = await run([
            "ip",
            "netns",
            "exec",
            ns,
            "cat",
            "/proc/sys/net/ipv6/conf/default/accept_dad",
          ]);
          assert.equal(dad.trim(), "0", `${ns}: sysctls set ahead too`);
        }
      } finally {
        await pool.stop();
      }
      assert.deepEqual(await ours(prefix), [], "stop deletes the namespaces still waiting");
    });
  });

  test("take hands out the lowest ready id, then free ids that nobody uses or holds", async () => {
    await withPrefix(async (prefix) => {
      const errors: string[] = [];
      const pool = new EndpointPool({
        netnsPrefix: `${prefix}-`,
        size: 1,
        used: (id) => id === 2,
        onError: (e) => errors.push(String(e)),
      });
      try {
        await pool.start();
        const a = pool.take();
        assert.equal(a.id, 1);
        assert.equal(a.netns, `${prefix}-ep1`);
        assert.ok(
          a.fresh,
          `the first take gets the ready namespace (fill errors: ${errors.join("; ") || "none"})`,
        );
        const b = pool.take(); // the refill (started by the first take) has made none yet: an id only
        assert.deepEqual([b.id, b.fresh], [3, undefined]);
        assert.equal(pool.take().id, 4);
        pool.done(b.id);
        a.fresh.abort();
      } finally {
        await pool.stop();
      }
    });
  });

  test("start deletes leftover <prefix>ep<N> namespaces no endpoint uses, and keeps the used ones", async () => {
    await withPrefix(async (prefix) => {
      for (const n of ["ep3", "ep7", "other"]) await run(["ip", "netns", "add", `${prefix}-${n}`]);
      const pool = new EndpointPool({ netnsPrefix: `${prefix}-`, size: 0, used: (id) => id === 3 });
      await pool.start();
      await pool.stop();
      assert.deepEqual(await ours(prefix), [`${prefix}-ep3`, `${prefix}-other`]);
    });
  });

  test("an endpoint made from a pooled namespace spawns no process, is wired, and its veth comes at finish", async () => {
    await withPrefix(async (prefix) => {
      const node: NamedNodeNetns = await createNode({
        netns: `${prefix}-node`,
        gateway4: "10.206.0.1",
        podCidr4: "10.206.0.0/24",
      });
      const pool = new EndpointPool({ netnsPrefix: `${prefix}-`, size: 1, used: () => false });
      try {
        await pool.start();
        await linkStates(node.netns); // the node's rtnetlink child answered once: warm
        const t = pool.take();
        await pool.stop(); // its refill (started by take) is not the create's: done before we count
        const p = {
          node,
          name: "a",
          netns: t.netns,
          hostIfname: `${prefix.slice(0, 8)}h1`,
          ipv4: "10.206.0.5",
        };
        const argv = await spawned(async () => {
          const prepared = await prepareEndpoint(p, t.fresh);
          assert.equal((await linkStates(node.netns)).has(p.hostIfname), false, "no veth before finish");
          await prepared.finish();
        });
        pool.done(t.id);
        assert.deepEqual(
          argv.filter((a) => !a.some((x) => x.endsWith("rtnl-child.js"))),
          [],
          "no process spawned for the create",
        );
        assert.equal((await linkStates(t.netns)).get("eth0")?.up, true);
        const addr = await run(["ip", "-n", t.netns, "-o", "-4", "addr", "show", "dev", "eth0"]);
        assert.match(addr, /10\.206\.0\.5\/32/);
        const ping = await run(["ip", "netns", "exec", node.netns, "ping", "-c1", "-W5", "10.206.0.5"]);
        assert.match(ping, /1 received/);
      } finally {
        await pool.stop();
      }
    });
  });

  test("a failed finish on a pooled namespace leaves nothing: no namespace, no process holding it", async () => {
    await withPrefix(async (prefix) => {
      // The node's namespace does not exist: the veth cannot be created.
      const node = { netns: `${prefix}-gone`, gateway4: "10.207.0.1" };
      const pool = new EndpointPool({ netnsPrefix: `${prefix}-`, size: 1, used: () => false });
      try {
        await pool.start();
        const t = pool.take();
        // No refill meanwhile: a namespace made now could get the freed one's inode number.
        await pool.stop();
        const ino = statSync(`/run/netns/${t.netns}`).ino;
        assert.deepEqual(holders(ino), [], "no process waits inside a pooled namespace (the helper made it)");
        const prepared = await prepareEndpoint(
          { node, name: "a", netns: t.netns, hostIfname: "mx2h1", ipv4: "10.207.0.5" },
          t.fresh,
        );
        await assert.rejects(prepared.finish(), /gone/);
        assert.equal((await listNetns()).includes(t.netns), false, "namespace deleted");
        for (let i = 0; i < 100 && holders(ino).length > 0; i++) await sleep(50);
        assert.deepEqual(holders(ino), [], "no process keeps the namespace alive");
        pool.done(t.id); // (the pool may then make a new namespace for this free id)
      } finally {
        await pool.stop();
      }
    });
  });

  test("a pooled namespace deleted from outside is not handed out", async () => {
    await withPrefix(async (prefix) => {
      const pool = new EndpointPool({ netnsPrefix: `${prefix}-`, size: 1, used: () => false });
      try {
        await pool.start();
        await run(["ip", "netns", "del", `${prefix}-ep1`]);
        const t = pool.take();
        assert.equal(t.fresh, undefined, "no namespace handed out");
        assert.notEqual(t.id, 1);
        pool.done(t.id);
      } finally {
        await pool.stop();
      }
    });
  });
});
