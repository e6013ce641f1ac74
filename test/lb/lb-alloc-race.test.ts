// ClusterIP / NodePort allocation across nodes (a real etcd, src/lab/etcd.ts): two nodes'
// LbControllers, each on its own ClusterResourceStore (its embedded store + the shared etcd) as
// the agent wires them, apply Services at the same time. Real policy engines; the kernel is left
// out (enforce does nothing: the datapath is lb-cluster's and lb-agent's business). The nodes do
// not watch each other here, so each node's own view is stale: only the store can keep them apart.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { LbController } from "../../src/agent/controllers/lb.js";
import { ClusterResourceStore } from "../../src/cluster/resource-store.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import type { LbService } from "../../src/lb/types.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import { EmbeddedStore } from "../../src/store/embedded.js";
import type { EtcdStore } from "../../src/store/etcd.js";
import type { Store, TxnRequest, TxnResult } from "../../src/store/store.js";

const logger = pino({ level: "silent" });

const svc = (name: string, extra = ""): string => `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: race}
spec:
  type: NodePort
  selector: {app: ${name}}
  ports: [{name: http, port: 80, targetPort: 8080}]
${extra}`;

/** The node's store, with a hook run before each transaction (to let the other node win a race). */
class HookedStore extends ClusterResourceStore {
  beforeTxn: (() => Promise<void>) | undefined;
  lost = 0;
  override async txn(req: TxnRequest): Promise<TxnResult> {
    const hook = this.beforeTxn;
    this.beforeTxn = undefined;
    if (hook) await hook();
    const r = await super.txn(req);
    if (!r.succeeded) this.lost++;
    return r;
  }
}

interface Node {
  readonly lb: LbController;
  readonly store: HookedStore;
  readonly local: EmbeddedStore;
  readonly kv: EtcdStore;
  readonly dir: string;
}

async function node(etcd: EtcdHandle, name: string, serviceCidr = "10.98.0.0/24"): Promise<Node> {
  const dir = mkdtempSync(join(tmpdir(), `m2c-${name}-`));
  const local = await EmbeddedStore.open({ dir, logger });
  const kv = etcd.store({ prefix: "m2c/" });
  const store = new HookedStore(local, kv);
  const engine = new PolicyEngine();
  let queue: Promise<unknown> = Promise.resolve();
  const lb = new LbController({
    store,
    logger,
    engine: () => engine,
    enforce: () => Promise.resolve({ ops: 0, ms: 0, endpointsChanged: 0 }),
    serial: <T>(f: () => Promise<T>): Promise<T> => {
      const r = queue.then(f, f);
      queue = r.catch(() => undefined);
      return r;
    },
    table: `m2c_${name}_lb`,
    config: { serviceCidr, nodePortRange: [31000, 31099] },
  });
  return { lb, store, local, kv, dir };
}

/** Every Service in etcd, and every reservation (key -> holder). */
async function stored(s: Store): Promise<{ services: LbService[]; alloc: Map<string, string> }> {
  const services = (await s.list("lb/services/")).kvs.map((kv) => JSON.parse(kv.value) as LbService);
  const alloc = new Map((await s.list("lb/alloc/")).kvs.map((kv) => [kv.key, kv.value]));
  return { services, alloc };
}

function assertDistinct(services: readonly LbService[]): void {
  const ips = services.map((s) => s.clusterIP);
  assert.equal(new Set(ips).size, ips.length, `two services share a ClusterIP: ${ips.join(" ")}`);
  const ports = services.flatMap((s) =>
    s.ports.flatMap((p) => (p.nodePort === undefined ? [] : [p.nodePort])),
  );
  assert.equal(new Set(ports).size, ports.length, `two services share a NodePort: ${ports.join(" ")}`);
}

describe(
  "Service allocation across nodes (real etcd, two nodes' controllers; kernel left out)",
  { skip: skipWithoutEtcd() },
  () => {
    let etcd: EtcdHandle | undefined;
    const nodes: Node[] = [];
    before(async () => {
      etcd = await startEtcd();
      nodes.push(await node(etcd, "n1"), await node(etcd, "n2"));
    });
    after(async () => {
      for (const n of nodes) {
        n.lb.stop();
        await n.kv.close().catch(() => undefined);
        await n.local.close().catch(() => undefined);
        rmSync(n.dir, { recursive: true, force: true });
      }
      await etcd?.stop();
    });

    test("12 Services applied at once from two nodes get 12 distinct ClusterIPs and NodePorts, each reserved", async () => {
      const [n1, n2] = nodes as [Node, Node];
      await Promise.all(
        [n1, n2].flatMap((n, i) =>
          [0, 1, 2, 3, 4, 5].map((j) => n.lb.apply(svc(`s${i}${j}`), `s${i}${j}.yaml`)),
        ),
      );
      const { services, alloc } = await stored(n1.store);
      assert.equal(services.length, 12);
      assertDistinct(services);
      for (const s of services) {
        const id = `race/${s.name}`;
        assert.equal(alloc.get(`lb/alloc/ip/${s.clusterIP}`), id);
        assert.equal(alloc.get(`lb/alloc/node-port/TCP/${s.ports[0]?.nodePort}`), id);
      }
      assert.equal(alloc.size, 24, "one reservation per address and port, none left over");
    });

    test("a node that loses the race reads again and takes the next free address and port", async () => {
      const [n1, n2] = nodes as [Node, Node];
      const lostBefore = n2.store.lost;
      // n2 has allocated from what it read; before it writes, n1 takes the same first free ones.
      n2.store.beforeTxn = async () => void (await n1.lb.apply(svc("first"), "first.yaml"));
      await n2.lb.apply(svc("second"), "second.yaml");
      assert.ok(n2.store.lost > lostBefore, "n2's first transaction must have lost to n1's write");
      const { services } = await stored(n1.store);
      assertDistinct(services);
      assert.ok(services.some((s) => s.name === "first") && services.some((s) => s.name === "second"));
    });

    test("an explicit clusterIP another Service holds is refused, the whole file unwritten; a delete frees it", async () => {
      const [n1, n2] = nodes as [Node, Node];
      const { services } = await stored(n1.store);
      const taken = services.find((s) => s.name === "first")?.clusterIP ?? "";
      const file = `${svc("mine")}---\n${svc("explicit", `  clusterIP: ${taken}\n`)}`;
      await assert.rejects(
        n2.lb.apply(file, "explicit.yaml"),
        (e: Error) => /spec\.clusterIP/.test(e.message) && e.message.includes(`${taken}: provided IP is already allocated (to service race/first)`), // prettier-ignore
      );
      let now = await stored(n1.store);
      assert.ok(
        !now.services.some((s) => s.name === "mine" || s.name === "explicit"),
        "nothing of the file written",
      );
      assert.equal(now.alloc.size, 2 * now.services.length, "no reservation of the refused file left");

      // The race: n2 read the address as free, n1 takes it explicitly before n2 writes.
      const free = "10.98.0.200";
      n2.store.beforeTxn = async () =>
        void (await n1.lb.apply(svc("grab", `  clusterIP: ${free}\n`), "grab.yaml"));
      await assert.rejects(n2.lb.apply(file.replace(taken, free), "explicit.yaml"), /provided IP is already allocated \(to service race\/grab\)/); // prettier-ignore
      now = await stored(n1.store);
      assert.ok(
        !now.services.some((s) => s.name === "mine" || s.name === "explicit"),
        "nothing of the file written",
      );

      // Deleted through n1: its reservations go in the same transaction, and n2 may take the address.
      await n1.lb.delete(svc("grab"), "grab.yaml");
      now = await stored(n1.store);
      assert.ok(
        ![...now.alloc.values()].includes("race/grab"),
        "the deleted service's reservations are released",
      );
      const report = await n2.lb.apply(file.replace(taken, free), "explicit.yaml");
      assert.deepEqual(
        report.resources.map((r) => r.status),
        ["created", "created"],
      );
      now = await stored(n1.store);
      assert.equal(now.services.find((s) => s.name === "explicit")?.clusterIP, free);
      assertDistinct(now.services);
      assert.equal(now.alloc.size, 2 * now.services.length);
    });

    test("two files of 70 Services each (more than one etcd transaction) applied at once from two nodes: all distinct", async () => {
      const [n1, n2] = nodes as [Node, Node];
      const file = (p: string): string =>
        Array.from({ length: 70 }, (_, i) => svc(`${p}${i}`).replace("type: NodePort", "type: ClusterIP")).join("---\n"); // prettier-ignore
      const [r1, r2] = await Promise.all([n1.lb.apply(file("bulk-a"), "a.yaml"), n2.lb.apply(file("bulk-b"), "b.yaml")]); // prettier-ignore
      assert.ok([...r1.resources, ...r2.resources].every((r) => r.status === "created"));
      const now = await stored(n1.store);
      assert.equal(now.services.filter((s) => s.name.startsWith("bulk-")).length, 140);
      assertDistinct(now.services);
      assert.equal(now.alloc.size, now.services.reduce((n, s) => n + 1 + s.ports.filter((p) => p.nodePort).length, 0)); // prettier-ignore
    });

    test("a full pool is refused naming it, and nothing is written", async () => {
      // A third node whose service CIDR holds one address (a /30 without its gateway and broadcast).
      const n3 = await node(etcd as EtcdHandle, "n3", "10.98.1.0/30");
      nodes.push(n3);
      await n3.lb.apply(svc("only"), "only.yaml");
      const was = await stored(n3.store);
      await assert.rejects(
        n3.lb.apply(svc("one-too-many"), "more.yaml"),
        /spec\.clusterIP cannot be allocated: the service CIDR 10\.98\.1\.0\/30 \(--service-cidr\) is full/,
      );
      assert.deepEqual(await stored(n3.store), was);
    });
  },
);
