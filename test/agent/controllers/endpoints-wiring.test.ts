/**
 * The endpoints controller's wiring order (needs root): the new endpoint's
 * namespace is built while its policy goes into the kernel, its veth only
 * after (fail closed); a policy that fails leaves no namespace behind.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
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
});
