/**
 * The endpoints controller's wiring order (needs root): the new endpoint's
 * namespace is built while its policy goes into the kernel (or was made
 * ahead of time by the pool), its veth only after (fail closed); a policy
 * that fails leaves no namespace behind, nor a process holding one.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readlinkSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { pino } from "pino";
import type { EnforceResult } from "../../../src/agent/controller.js";
import { EndpointsController } from "../../../src/agent/controllers/endpoints.js";
import { Ipam } from "../../../src/agent/ipam.js";
import { createNode, type NodeNetns } from "../../../src/datapath/endpoint.js";
import type { EndpointPool } from "../../../src/datapath/endpoint-pool.js";
import { cleanupPrefix, listNetns } from "../../../src/datapath/netns.js";
import { linkStates } from "../../../src/datapath/rtnl.js";
import { EmbeddedStore } from "../../../src/store/embedded.js";
import { rootSkipReason } from "../../datapath/harness.js";
import { testDeps } from "./fake-deps.js";

const skip = rootSkipReason();

type Enforce = (prefix: string, node: NodeNetns) => Promise<EnforceResult>;

async function lab(
  enforce: Enforce,
  f: (c: EndpointsController, prefix: string, node: NodeNetns) => Promise<void>,
  poolSize = 0,
): Promise<void> {
  const prefix = `mh4${randomBytes(2).toString("hex")}c`;
  const dir = await mkdtemp(join(tmpdir(), "membrane-epwire-"));
  const store = await EmbeddedStore.open({ dir, logger: pino({ level: "silent" }) });
  try {
    const node = await createNode({
      netns: `${prefix}-node`,
      gateway4: "10.205.0.1",
      podCidr4: "10.205.0.0/24",
    });
    const d = testDeps(store);
    const c = new EndpointsController({
      ...d,
      enforce: () => enforce(prefix, node),
      ipam: new Ipam({ store, ipv4: "10.205.0.0/24" }),
      netnsPrefix: `${prefix}-`,
      nodeNetns: node.netns,
      node: () => node,
      poolSize,
    });
    await f(c, prefix, node);
    await c.stopVerification();
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
    await cleanupPrefix(prefix + "-");
  }
}

/** Waits (safety net only) until `netns` exists; false if it never did. */
async function appears(netns: string): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if ((await listNetns()).includes(netns)) return true;
    await sleep(50);
  }
  return false;
}

/** Waits (safety net only) until the controller's pool has a namespace ready for `id`. */
async function pooled(c: EndpointsController, id: number): Promise<boolean> {
  const pool = (c as unknown as { pool: EndpointPool }).pool;
  for (let i = 0; i < 400; i++) {
    if (pool.readyIds().includes(id)) return true;
    await sleep(50);
  }
  return false;
}

/** Pids of the processes in the network namespace with inode `ino`. */
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

describe("endpoints controller wiring (root)", { skip: skip ?? false }, () => {
  test("the namespace is built while the policy is enforced, the veth only after", async () => {
    const seen: { netns: boolean; veth: boolean }[] = [];
    const enforce: Enforce = async (prefix, node) => {
      // The endpoint's id is 1 (the first): its namespace and host interface names follow.
      const netns = await appears(`${prefix}-ep1`);
      const veth = (await linkStates(node.netns)).has("mbr1");
      seen.push({ netns, veth });
      return { ops: 1, ms: 0, endpointsChanged: 1 };
    };
    await lab(enforce, async (c, prefix, node) => {
      const v = await c.create({ name: "a", namespace: "default", labels: { app: "a" } });
      assert.equal(v.netns, `${prefix}-ep1`);
      assert.deepEqual(seen, [{ netns: true, veth: false }]);
      assert.ok((await linkStates(node.netns)).get("mbr1")?.up, "veth up after the policy");
    });
  });

  test("a policy that fails to apply leaves no namespace behind", async () => {
    let calls = 0;
    const enforce: Enforce = async (prefix) => {
      if (calls++ > 0) return { ops: 0, ms: 0, endpointsChanged: 0 }; // the undo's enforce
      await appears(`${prefix}-ep1`);
      throw new Error("enforce refused (test)");
    };
    await lab(enforce, async (c, prefix) => {
      await assert.rejects(
        c.create({ name: "a", namespace: "default", labels: { app: "a" } }),
        /enforce refused/,
      );
      assert.deepEqual(
        (await listNetns()).filter((n) => n.startsWith(`${prefix}-ep`)),
        [],
      );
    });
  });

  test("with its pool started, a create takes the namespace made ahead of time; the veth still comes after the policy", async () => {
    const seen: boolean[] = [];
    const enforce: Enforce = async (_prefix, node) => {
      seen.push((await linkStates(node.netns)).has("mbr1"));
      return { ops: 1, ms: 0, endpointsChanged: 1 };
    };
    await lab(
      enforce,
      async (c, prefix, node) => {
        c.startVerification();
        assert.ok(await pooled(c, 1), "the pool made ep1 before any create");
        const ino = statSync(`/run/netns/${prefix}-ep1`).ino;
        const v = await c.create({ name: "a", namespace: "default", labels: { app: "a" } });
        assert.equal(v.netns, `${prefix}-ep1`);
        assert.equal(statSync(`/run/netns/${v.netns}`).ino, ino, "the very namespace the pool made");
        assert.deepEqual(seen, [false], "no veth while the policy was enforced");
        assert.ok((await linkStates(node.netns)).get("mbr1")?.up, "veth up after the policy");
      },
      1,
    );
  });

  test("a policy that fails on a pooled namespace leaves no namespace and no process behind", async () => {
    let calls = 0;
    const enforce: Enforce = async () => {
      if (calls++ > 0) return { ops: 0, ms: 0, endpointsChanged: 0 }; // the undo's enforce
      throw new Error("enforce refused (test)");
    };
    await lab(
      enforce,
      async (c, prefix) => {
        c.startVerification();
        assert.ok(await pooled(c, 1), "the pool made ep1 before any create");
        const ino = statSync(`/run/netns/${prefix}-ep1`).ino;
        await assert.rejects(
          c.create({ name: "a", namespace: "default", labels: { app: "a" } }),
          /enforce refused/,
        );
        await c.stopVerification(); // the pool's own namespaces go too
        assert.deepEqual(
          (await listNetns()).filter((n) => n.startsWith(`${prefix}-ep`)),
          [],
        );
        for (let i = 0; i < 100 && holders(ino).length > 0; i++) await sleep(50);
        assert.deepEqual(holders(ino), [], "no process keeps the failed endpoint's namespace alive");
        assert.equal(c.size, 0);
      },
      1,
    );
  });
});
