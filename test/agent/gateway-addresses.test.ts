/**
 * A Gateway's own address from the LoadBalancer pool (agent/gateway-addresses.ts),
 * on the embedded store: one per pool family; what a Service or another node's
 * Gateway holds is skipped; a full pool leaves a Gateway without one until an
 * address is released; what this node's Gateways hold survives a restart;
 * a release deletes only a reservation still ours; no pool, nothing held; a full pool is not
 * read again until the watch on the reservations sees a change.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pino } from "pino";
import { GatewayAddresses } from "../../src/agent/gateway-addresses.js";
import { EmbeddedStore } from "../../src/store/embedded.js";
import { countingLists } from "../support/counting-store.js";
import { until } from "../support/until.js";

const logger = pino({ level: "silent" });

async function withStore(f: (store: EmbeddedStore) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "g16-gwaddr-"));
  const store = await EmbeddedStore.open({ dir, logger });
  try {
    await f(store);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

// A /29 gives .2 to .6 (lb/allocate.ts skips the network, the first host and the last).
const POOL = { loadBalancerPool: "192.0.2.0/29", loadBalancerPoolSecondary: "2001:db8:5::/125" };

test("one address of each pool family per Gateway, skipping a Service's and another node's", async () => {
  await withStore(async (store) => {
    await store.put("lb/alloc/ip/192.0.2.2", "default/web"); // a LoadBalancer Service's
    await store.put("lb/alloc/ip/192.0.2.3", "gateway n2-gateway infra/a"); // node n2's Gateway infra/a
    const own = new GatewayAddresses({ store, logger, netns: "n1-gateway", pool: POOL });
    assert.deepEqual(await own.reserve(["infra/a", "infra/b"]), ["192.0.2.4", "2001:db8:5::2", "192.0.2.5", "2001:db8:5::3"]); // prettier-ignore
    assert.deepEqual(own.assigned(["infra/a", "infra/b"]), {
      "infra/a": ["192.0.2.4", "2001:db8:5::2"],
      "infra/b": ["192.0.2.5", "2001:db8:5::3"],
    });
    assert.equal((await store.get("lb/alloc/ip/192.0.2.4"))?.value, "gateway n1-gateway infra/a");
    assert.deepEqual(await own.reserve(["infra/a", "infra/b"]), [], "held ones are kept, nothing new");
  });
});

test("a full pool: the Gateway gets none ([]), and the address a released Gateway held next", async () => {
  await withStore(async (store) => {
    const own = new GatewayAddresses({ store, logger, netns: "n1-gateway", pool: { loadBalancerPool: "192.0.2.0/30" } }); // prettier-ignore
    await own.reserve(["ns/first", "ns/second"]);
    assert.deepEqual(own.assigned(["ns/first", "ns/second"]), { "ns/first": ["192.0.2.2"], "ns/second": [] });
    assert.deepEqual(await own.release(["ns/second"]), ["192.0.2.2"]);
    assert.equal(await store.get("lb/alloc/ip/192.0.2.2"), undefined);
    await own.reserve(["ns/second"]);
    assert.deepEqual(own.assigned(["ns/second"]), { "ns/second": ["192.0.2.2"] });
  });
});

test("a restarted agent reads what its Gateways hold; a release leaves a reservation another holder took", async () => {
  await withStore(async (store) => {
    const first = new GatewayAddresses({ store, logger, netns: "n1-gateway", pool: POOL });
    await first.reserve(["infra/a"]);
    const again = new GatewayAddresses({ store, logger, netns: "n1-gateway", pool: POOL });
    await again.load();
    assert.deepEqual(again.assigned(["infra/a"]), { "infra/a": ["192.0.2.2", "2001:db8:5::2"] });
    await store.put("lb/alloc/ip/192.0.2.2", "default/svc"); // taken over (by hand) meanwhile
    assert.deepEqual(await again.release([]), ["192.0.2.2", "2001:db8:5::2"]);
    assert.equal((await store.get("lb/alloc/ip/192.0.2.2"))?.value, "default/svc");
    assert.equal(await store.get("lb/alloc/ip/2001:db8:5::2"), undefined);
  });
});

test("no pool: nothing is reserved and no Gateway has an address of its own", async () => {
  await withStore(async (store) => {
    const own = new GatewayAddresses({ store, logger, netns: "n1-gateway", pool: {} });
    assert.equal(own.enabled, false);
    assert.deepEqual(await own.reserve(["infra/a"]), []);
    assert.equal(own.assigned(["infra/a"]), undefined);
    assert.deepEqual((await store.list("lb/")).kvs, []);
  });
});

test("a full pool is read again only after a reservation changes, which calls onChange", async () => {
  await withStore(async (store) => {
    const counted = countingLists(store);
    const own = new GatewayAddresses({ store: counted.store, logger, netns: "n1-gateway", pool: { loadBalancerPool: "192.0.2.0/30" } }); // prettier-ignore
    let woke = 0;
    own.onChange(() => woke++);
    await store.put("lb/alloc/ip/192.0.2.2", "default/web"); // the one address, a Service's
    assert.deepEqual(await own.reserve(["ns/gw"]), []);
    const read = counted.lists();
    assert.deepEqual(await own.reserve(["ns/gw"]), []);
    assert.equal(counted.lists(), read, "not read again while nothing changed");
    assert.equal(woke, 0);
    await store.delete("lb/alloc/ip/192.0.2.2"); // the Service is deleted
    await until("the watch says the reservations changed", () => woke === 1);
    assert.deepEqual(await own.reserve(["ns/gw"]), ["192.0.2.2"]);
    await own.stop();
  });
});
