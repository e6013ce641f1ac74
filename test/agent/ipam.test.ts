import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Ipam, type IpamParams } from "../../src/agent/ipam.js";
import { EmbeddedStore } from "../../src/store/embedded.js";
import { MembraneError } from "../../src/errors.js";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
async function openStore(dir?: string): Promise<{ store: EmbeddedStore; dir: string }> {
  const d = dir ?? mkdtempSync(join(tmpdir(), "membrane-ipam-"));
  if (!dir) dirs.push(d);
  return { store: await EmbeddedStore.open({ dir: d, logger: pino({ level: "silent" }) }), dir: d };
}

async function withIpam(
  cidrs: Omit<IpamParams, "store">,
  f: (ipam: Ipam, store: EmbeddedStore) => Promise<void>,
): Promise<void> {
  const { store } = await openStore();
  try {
    await f(new Ipam({ store, ...cidrs }), store);
  } finally {
    await store.close();
  }
}

const exhausted = (msg: string) => (e: unknown) =>
  e instanceof MembraneError && e.code === "IPAM_EXHAUSTED" && e.message === msg;

describe("IPAM", () => {
  test("addresses are handed out in order from the second host; the first host is the gateway", () =>
    withIpam({ ipv4: "10.0.0.0/24" }, async (ipam, store) => {
      assert.deepEqual(await ipam.allocate("default/a"), { ipv4: "10.0.0.2" });
      assert.deepEqual(await ipam.allocate("default/b"), { ipv4: "10.0.0.3" });
      assert.deepEqual(ipam.gateways(), { ipv4: "10.0.0.1" });
      assert.deepEqual(
        (await store.list("ipam/")).kvs.map((kv) => [kv.key, kv.value]),
        [
          ["ipam/10.0.0.0/24/10.0.0.2", '{"owner":"default/a"}'],
          ["ipam/10.0.0.0/24/10.0.0.3", '{"owner":"default/b"}'],
        ],
      );
    }));

  test("a /29 yields exactly .2 to .6: never the network, the gateway or the broadcast address", () =>
    withIpam({ ipv4: "192.168.7.8/29" }, async (ipam) => {
      const got: string[] = [];
      for (let i = 0; i < 5; i++) got.push((await ipam.allocate(`p${i}`)).ipv4);
      assert.deepEqual(got, ["192.168.7.10", "192.168.7.11", "192.168.7.12", "192.168.7.13", "192.168.7.14"]);
      await assert.rejects(
        ipam.allocate("p5"),
        exhausted("Cannot allocate an IPv4 address for p5: all 5 addresses of 192.168.7.8/29 are in use"),
      );
    }));

  test("asking again for the same owner returns the address it holds", () =>
    withIpam({ ipv4: "10.0.0.0/24" }, async (ipam) => {
      const a = await ipam.allocate("default/a");
      await ipam.allocate("default/b");
      assert.deepEqual(await ipam.allocate("default/a"), a);
      assert.equal((await ipam.list()).length, 2);
    }));

  test("concurrent requests for one owner get one address", () =>
    withIpam({ ipv4: "10.0.0.0/24" }, async (ipam) => {
      const got = await Promise.all([ipam.allocate("x"), ipam.allocate("x"), ipam.allocate("x")]);
      assert.deepEqual(got, [{ ipv4: "10.0.0.2" }, { ipv4: "10.0.0.2" }, { ipv4: "10.0.0.2" }]);
    }));

  test("a released address is free again, but only after the rest of the range was used", () =>
    withIpam({ ipv4: "10.0.0.0/29" }, async (ipam) => {
      await ipam.allocate("a"); // .2
      await ipam.allocate("b"); // .3
      assert.deepEqual(await ipam.release("a"), ["10.0.0.2"]);
      assert.deepEqual(await ipam.release("a"), [], "releasing twice frees nothing");
      const next = [];
      for (const o of ["c", "d", "e", "f"]) next.push((await ipam.allocate(o)).ipv4);
      assert.deepEqual(next, ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.2"]);
    }));

  test("dual stack: each owner gets one IPv4 and one IPv6 address", () =>
    withIpam({ ipv4: "10.0.0.0/24", ipv6: "fd00:10::/64" }, async (ipam) => {
      assert.deepEqual(await ipam.allocate("a"), { ipv4: "10.0.0.2", ipv6: "fd00:10::2" });
      assert.deepEqual(ipam.gateways(), { ipv4: "10.0.0.1", ipv6: "fd00:10::1" });
      assert.deepEqual((await ipam.release("a")).sort(), ["10.0.0.2", "fd00:10::2"]);
    }));

  test("dual stack: when IPv6 is exhausted the IPv4 address taken by the same call is given back", () =>
    withIpam({ ipv4: "10.0.0.0/24", ipv6: "fd00:10::/126" }, async (ipam) => {
      await ipam.allocate("a");
      await assert.rejects(
        ipam.allocate("b"),
        exhausted("Cannot allocate an IPv6 address for b: all 1 addresses of fd00:10::/126 are in use"),
      );
      assert.deepEqual(
        (await ipam.list()).map((x) => x.owner),
        ["a", "a"],
      );
    }));

  test("two allocators on one store (two nodes) never hand out one address twice", () =>
    withIpam({ ipv4: "10.0.0.0/24" }, async (ipam1, store) => {
      const ipam2 = new Ipam({ store, ipv4: "10.0.0.0/24" });
      const owners = Array.from({ length: 60 }, (_, i) => `pod-${i}`);
      const got = await Promise.all(owners.map((o, i) => (i % 2 ? ipam1 : ipam2).allocate(o)));
      const ips = got.map((g) => g.ipv4);
      assert.equal(new Set(ips).size, 60);
      const listed = await ipam1.list();
      assert.equal(listed.length, 60);
      for (const [i, o] of owners.entries()) assert.equal(listed.find((l) => l.ip === ips[i])?.owner, o);
    }));

  test("allocations persist across a store reopen", async () => {
    const s1 = await openStore();
    await new Ipam({ store: s1.store, ipv4: "10.0.0.0/24" }).allocate("a");
    await s1.store.close();
    const s2 = await openStore(s1.dir);
    try {
      const ipam = new Ipam({ store: s2.store, ipv4: "10.0.0.0/24" });
      assert.deepEqual(await ipam.allocate("b"), { ipv4: "10.0.0.3" });
      assert.deepEqual(await ipam.allocate("a"), { ipv4: "10.0.0.2" });
    } finally {
      await s2.store.close();
    }
  });

  const bad: { name: string; params: Omit<IpamParams, "store">; message: string }[] = [
    {
      name: "not a prefix",
      params: { ipv4: "banana" },
      message: 'Cannot use the IPv4 pod CIDR "banana": it is not an address/length prefix',
    },
    {
      name: "a bare address",
      params: { ipv4: "10.0.0.1" },
      message: 'Cannot use the IPv4 pod CIDR "10.0.0.1": it is not an address/length prefix',
    },
    {
      name: "host bits set",
      params: { ipv4: "10.0.0.1/24" },
      message: 'Cannot use the IPv4 pod CIDR "10.0.0.1/24": it has host bits set',
    },
    {
      name: "the wrong family",
      params: { ipv4: "fd00::/64" },
      message: 'Cannot use the IPv4 pod CIDR "fd00::/64": it is an IPv6 prefix',
    },
    {
      name: "too small",
      params: { ipv4: "10.0.0.0/31" },
      message:
        'Cannot use the IPv4 pod CIDR "10.0.0.0/31": it leaves no address after the network, gateway and last address',
    },
    {
      name: "IPv6 too small",
      params: { ipv4: "10.0.0.0/24", ipv6: "fd00::/127" },
      message:
        'Cannot use the IPv6 pod CIDR "fd00::/127": it leaves no address after the network, gateway and last address',
    },
  ];
  for (const b of bad) {
    test(`a pod CIDR that is ${b.name} is refused with CONFIG_INVALID`, () =>
      withIpam({ ipv4: "10.0.0.0/24" }, async (_ipam, store) => {
        assert.throws(
          () => new Ipam({ store, ...b.params }),
          (e: unknown) =>
            e instanceof MembraneError && e.code === "CONFIG_INVALID" && e.message === b.message,
        );
      }));
  }

  test("warm() reads the allocations at start: the first plan after it lists nothing in the store", () =>
    withIpam({ ipv4: "10.0.0.0/24", ipv6: "fd00::/120" }, async (ipam, store) => {
      await store.put("remote/x", "y"); // the store holds more than IPAM's keys (a list scans it all)
      let lists = 0;
      const list = store.list.bind(store);
      store.list = (prefix: string) => {
        lists++;
        return list(prefix);
      };
      await ipam.warm();
      assert.equal(lists, 2, "one list per pod CIDR, at start");
      const { allocation, txn } = await ipam.plan("default/a");
      assert.deepEqual(allocation, { ipv4: "10.0.0.2", ipv6: "fd00::2" });
      assert.equal(lists, 2, "the plan used the warmed view");
      assert.equal((await store.txn(txn)).succeeded, true);
      // The watch keeps the view current: the next plan does not offer the address just taken.
      await new Promise((r) => setTimeout(r, 50));
      assert.notEqual((await ipam.plan("default/b")).allocation.ipv4, "10.0.0.2");
      assert.equal(lists, 2);
    }));
});
