// Cluster identities through real agents (needs root and the etcd binary): two agents, each on a
// node namespace of its own and one etcd, give the same labels the same number; an endpoint created
// while etcd is down is closed (reserved:init, real packets dropped) and opens once etcd is back;
// a restarted agent keeps its numbers; a number no endpoint uses any more is withdrawn.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "../../src/agent/agent.js";
import { ClusterIdentities } from "../../src/cluster/identities.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { ID } from "../../src/identity/reserved.js";
import { Probe } from "../../src/probe/probe.js";
import type { EtcdStore, StoreLease } from "../../src/store/etcd.js";
import { EmbeddedStore } from "../../src/store/embedded.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";
import { aliveReport, etcdBinary, silent, TestEtcd } from "./identities-etcd.js";
import { until } from "../support/until.js";

const T = 600; // probe timeout for "dropped"

/** One node: an agent on its own node namespace, its embedded store, a lease in the shared etcd. */
class TestNode {
  agent: Agent | undefined;
  private store: EmbeddedStore | undefined;
  private kv: EtcdStore | undefined;
  private lease: StoreLease | undefined;
  readonly probes: Probe[] = [];

  private constructor(
    readonly name: string,
    readonly prefix: string,
    readonly dir: string,
    private readonly etcd: TestEtcd,
    private readonly kvPrefix: string,
    private readonly podCidr4: string,
  ) {}

  static async create(etcd: TestEtcd, name: string, kvPrefix: string, podCidr4: string): Promise<TestNode> {
    const prefix = uniquePrefix(`id${name}`);
    const dir = await mkdtemp(join(tmpdir(), `membrane-id-${name}-`));
    const n = new TestNode(name, prefix, dir, etcd, kvPrefix, podCidr4);
    await n.start();
    return n;
  }

  /** Starts the agent; `beforeAgent` runs once the node has its lease (e.g. to stop etcd). */
  async start(beforeAgent?: () => Promise<void>): Promise<void> {
    this.store = await EmbeddedStore.open({ dir: join(this.dir, "store"), logger: silent });
    this.kv = this.etcd.store(this.kvPrefix);
    this.lease = await this.kv.grantLease(15, () => undefined);
    await beforeAgent?.();
    const ids = new ClusterIdentities({
      ctx: { kv: this.kv, lease: this.lease, node: this.name, nodeIp: {}, logger: silent },
    });
    this.agent = new Agent({
      store: this.store,
      logger: silent,
      nodeNetns: `${this.prefix}-node`,
      netnsPrefix: `${this.prefix}-`,
      podCidr4: this.podCidr4,
      table: `m${this.prefix}`,
      logGroup: 1,
      engine: {},
      resyncMs: 0,
      stateDir: this.dir,
      clusterIdentities: ids,
    });
    await this.agent.start();
    this.agent.serving();
  }

  /** Stops the agent as a crash would leave etcd: no revoke, the old lease runs out by itself. */
  async stop(): Promise<void> {
    await this.agent?.stop();
    this.agent = undefined;
    this.lease?.release();
    await this.kv?.close();
    await this.store?.close();
  }

  get a(): Agent {
    if (!this.agent) throw new Error(`node ${this.name} has no agent`);
    return this.agent;
  }

  async endpoint(name: string, app: string): Promise<{ ip: string; identity: number; probe: Probe }> {
    const v = await this.a.createEndpointRequest({ name, namespace: "default", labels: { app } });
    const probe = Probe.start(v.netns);
    this.probes.push(probe);
    await probe.listen("tcp", 80);
    return { ip: v.ipv4, identity: v.identity, probe };
  }

  async destroy(): Promise<void> {
    for (const p of this.probes) p.stop();
    try {
      await this.stop();
    } finally {
      await cleanupPrefix(this.prefix).catch(() => undefined);
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}

const skip = rootSkipReason() ?? (etcdBinary() ? false : "the etcd binary is not installed");

describe("cluster identities through agents (root, etcd)", { skip }, () => {
  // A CI run (load ~2) kept this file's process alive for 11 minutes after every test here had
  // passed (not seen alone). Until the handle is found: if anything still holds the event loop
  // 10 s after the last teardown, name it and fail, instead of hanging the suite.
  after(() => {
    setTimeout(() => {
      console.error(`still alive after teardown: ${aliveReport()}`);
      process.exit(1);
    }, 10_000).unref();
  });
  const etcd = new TestEtcd();
  const kvPrefix = `idagent-${process.pid}/`;
  let a: TestNode | undefined;
  let b: TestNode | undefined;
  let check: EtcdStore | undefined;
  const claims = async (node: string): Promise<string[]> =>
    ((await check?.list(`cluster/identities/${node}/`))?.kvs ?? []).map(
      (kv) => kv.key.split("/").pop() ?? "",
    );

  before(async () => {
    await etcd.start();
    check = etcd.store(kvPrefix);
    a = await TestNode.create(etcd, "a", kvPrefix, "10.212.0.0/24");
    b = await TestNode.create(etcd, "b", kvPrefix, "10.212.1.0/24");
  });
  after(async () => {
    await a?.destroy().catch(() => undefined);
    await b?.destroy().catch(() => undefined);
    await check?.close();
    await etcd.destroy();
  });

  test("the same labels get the same number on both nodes; other labels another number", async () => {
    const na = a as TestNode;
    const nb = b as TestNode;
    const web1 = await na.endpoint("web1", "web");
    const web2 = await nb.endpoint("web2", "web");
    const db = await na.endpoint("db", "db");
    assert.ok(web1.identity >= 256 && web1.identity < 1 << 24, `cluster number ${web1.identity}`);
    assert.equal(web2.identity, web1.identity);
    assert.notEqual(db.identity, web1.identity);
    assert.deepEqual((await claims("a")).sort(), [String(web1.identity), String(db.identity)].sort());
    assert.deepEqual(await claims("b"), [String(web1.identity)]);
  });

  test("another node's endpoints (remote endpoints) resolve to the cluster's number of their labels", async () => {
    const na = a as TestNode;
    const nb = b as TestNode;
    const web1 = na.a.getEndpoint("default", "web1");
    const db = na.a.getEndpoint("default", "db");
    await nb.a.remoteEndpoints.upsert([
      { ip: web1.ipv4, namespace: "default", labels: { app: "web" } },
      { ip: db.ipv4, namespace: "default", labels: { app: "db" } },
    ]);
    const remote = new Map(nb.a.engine.remoteEndpoints().map((r) => [r.spec.ip, r.identity.id]));
    assert.equal(remote.get(web1.ipv4), web1.identity);
    assert.equal(remote.get(db.ipv4), db.identity);
    assert.ok(
      (await claims("b")).includes(String(db.identity)),
      "b holds a reference while it uses the number",
    );
    await nb.a.remoteEndpoints.delete([db.ipv4]);
    await until("b's reference withdrawn", async () => !(await claims("b")).includes(String(db.identity)));
  });

  test("a number no endpoint of the node uses any more is withdrawn", async () => {
    const na = a as TestNode;
    const db = na.a.getEndpoint("default", "db").identity;
    await na.a.deleteEndpointRequest("default", "db");
    await until("the claim withdrawn", async () => !(await claims("a")).includes(String(db)));
  });

  test("etcd down: an endpoint created meanwhile is closed (packets dropped, status says so), known ones work, it opens once etcd is back", async () => {
    const na = a as TestNode;
    const client = await na.endpoint("client", "client");
    const web1 = na.a.getEndpoint("default", "web1");
    await etcd.stop();
    try {
      const late = await na.endpoint("late", "late");
      assert.equal(late.identity, ID.init, "closed: reserved:init");
      const st = na.a.status().controllers.find((c) => c.name === "identities");
      assert.match(st?.lastError?.message ?? "", /stay closed/);
      assert.equal(await client.probe.tcp(late.ip, 80, T), "timeout", "ingress of the closed endpoint");
      assert.equal(await late.probe.tcp(client.ip, 80, T), "timeout", "egress of the closed endpoint");
      assert.equal(await client.probe.tcp(web1.ipv4, 80, T), "ok", "a known identity keeps working");
    } finally {
      await etcd.start();
    }
    await until(
      "the late endpoint gets its number",
      () => na.a.getEndpoint("default", "late").identity !== ID.init,
    );
    const n = na.a.getEndpoint("default", "late").identity;
    assert.ok(n >= 256);
    // The number is in the record first; the kernel has it a moment later (under load, more than one probe).
    const lateIp = na.a.getEndpoint("default", "late").ipv4;
    await until("the late endpoint open", async () => (await client.probe.tcp(lateIp, 80, T)) === "ok");
    await until("its claim", async () => (await claims("a").catch((): string[] => [])).includes(String(n)));
    await until(
      "no error left",
      () => na.a.status().controllers.find((c) => c.name === "identities")?.lastError === undefined,
    );
  });

  test("a restarted agent keeps its numbers", async () => {
    const na = a as TestNode;
    const before = new Map(na.a.listEndpoints().map((e) => [e.name, e.identity]));
    await na.stop();
    await na.start();
    for (const e of na.a.listEndpoints()) assert.equal(e.identity, before.get(e.name), e.name);
    const web2 = (b as TestNode).a.getEndpoint("default", "web2").identity;
    assert.equal(na.a.getEndpoint("default", "web1").identity, web2);
    assert.ok((await claims("a")).includes(String(web2)));
  });

  test("an agent restarted while etcd is down keeps its numbers, and claims them again once etcd is back", async () => {
    const na = a as TestNode;
    const before = new Map(na.a.listEndpoints().map((e) => [e.name, e.identity]));
    const web1 = before.get("web1") as number;
    await na.stop();
    await until(
      "a's claims gone with its old lease",
      async () => !(await claims("a")).includes(String(web1)),
    );
    try {
      await na.start(() => etcd.stop());
      for (const e of na.a.listEndpoints()) assert.equal(e.identity, before.get(e.name), e.name);
      const client = na.a.getEndpoint("default", "client");
      const probe = Probe.start(client.netns);
      na.probes.push(probe);
      assert.equal(await probe.tcp(na.a.getEndpoint("default", "web1").ipv4, 80, T), "ok");
    } finally {
      await etcd.start();
    }
    await until("a's claim back", async () =>
      (await claims("a").catch((): string[] => [])).includes(String(web1)),
    );
  });
});
