/**
 * Remote endpoints through a real agent (needs root): bulk upserts and
 * deletes over the API, enforced in the kernel with real packets from
 * addresses outside the node, persisted, restored on restart.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { AgentClient } from "../../../src/agent/client.js";
import { REMOTE_ENDPOINTS_KEY } from "../../../src/agent/controllers/remote-endpoints.js";
import { STORE_TXN_OPS } from "../../../src/agent/controllers/identities.js";
import { runRaw } from "../../../src/datapath/exec.js";
import { MembraneError } from "../../../src/errors.js";
import type { Probe } from "../../../src/probe/probe.js";
import { EmbeddedStore } from "../../../src/store/embedded.js";
import { AgentLab, rootSkipReason, T } from "../e2e/harness.js";

const skip = rootSkipReason();

const SERVER_FROM_WEB = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
`;

const WEB = "198.51.100.7";
const OTHER = "198.51.100.8";

/** Many remote endpoints over a few label sets, in 10.230.0.0/16 (outside the pod CIDR). */
const many = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    ip: `10.230.${i >> 8}.${i & 255}`,
    namespace: "default",
    labels: { app: `remote${i % 7}` },
  }));

async function rejected(p: Promise<unknown>): Promise<MembraneError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof MembraneError, String(e));
    return e;
  }
  assert.fail("the request was expected to be rejected");
}

describe("agent: remote endpoints (root)", { skip: skip ?? false }, () => {
  let lab: AgentLab;
  let api: AgentClient;
  let outside: Probe;
  let server: string;

  /** The kernel's host map of the ipcache (exact addresses): address -> identity mark, as `nft` prints it. */
  const kernelIpcache = async (): Promise<string> =>
    (await runRaw(["nft", "list", "map", "inet", lab.options.table, "ipcache4_host"], { netns: lab.node }))
      .stdout;

  before(async () => {
    lab = await AgentLab.start("remote");
    api = new AgentClient({ socketPath: lab.options.socketPath, timeoutMs: 120_000 });
    server = (await lab.endpoint("server", { app: "server" }, { udp: [53] })).ip;
    await lab.outsideNamespace([`${WEB}/32`, `${OTHER}/32`]);
    outside = lab.probeIn(`${lab.prefix}-out`);
    await lab.agent.applyPolicies(SERVER_FROM_WEB, "server.yaml");
  });
  after(async () => {
    await lab?.destroy();
  });

  test("a remote endpoint's address carries its labels' identity in the kernel: policy admits it, and not its neighbour", async () => {
    assert.deepEqual(
      [await outside.udp(server, 53, T, WEB), await outside.udp(server, 53, T, OTHER)],
      ["timeout", "timeout"],
      "before: both are world",
    );
    const r = await api.upsertRemoteEndpoints([
      { ip: WEB, namespace: "default", labels: { app: "web" } },
      { ip: OTHER, namespace: "default", labels: { app: "other" } },
    ]);
    assert.equal(r.changed, 2);
    assert.ok(r.kernelOps > 0);
    assert.deepEqual(
      [await outside.udp(server, 53, T, WEB), await outside.udp(server, 53, T, OTHER)],
      ["ok", "timeout"],
    );
    const listed = await api.listRemoteEndpoints();
    assert.deepEqual(
      listed.map((e) => [e.ip, e.labels["app"]]),
      [
        [WEB, "web"],
        [OTHER, "other"],
      ],
    );
    assert.match(await kernelIpcache(), new RegExp(`${WEB.replace(/\./g, "\\.")} : 0x`));
    const ctl = lab.agent.status().controllers.find((c) => c.name === "remote-endpoints");
    assert.ok(ctl && ctl.desired > 0 && ctl.desired === ctl.realized, JSON.stringify(ctl));
    // The same request again changes nothing.
    const again = await api.upsertRemoteEndpoints([
      { ip: WEB, namespace: "default", labels: { app: "web" } },
    ]);
    assert.deepEqual(again, { changed: 0, unchanged: 1, kernelOps: 0 });
  });

  const badCases: { name: string; entry: Record<string, unknown>; want: RegExp; code: string }[] = [
    {
      name: "not an address",
      entry: { ip: "10.1", namespace: "default" },
      want: /endpoints\[2\]\.ip "10\.1" is not an IP address/,
      code: "ENDPOINT_INVALID",
    },
    {
      name: "a repeated address",
      entry: { ip: "10.230.0.0", namespace: "default" },
      want: /endpoints\[2\]\.ip \(10\.230\.0\.0\) repeats endpoints\[0\]/,
      code: "ENDPOINT_INVALID",
    },
    {
      name: "a derived label key",
      entry: { ip: "10.231.0.1", namespace: "default", labels: { "io.cilium.k8s.policy.cluster": "x" } },
      want: /endpoints\[2\] \(10\.231\.0\.1\).*derived by Membrane/,
      code: "ENDPOINT_INVALID",
    },
    {
      name: "a bad namespace",
      entry: { ip: "10.231.0.1", namespace: "Not_A_Name" },
      want: /endpoints\[2\] \(10\.231\.0\.1\).*namespace "Not_A_Name"/,
      code: "ENDPOINT_INVALID",
    },
    {
      name: "a local endpoint's address",
      entry: { ip: "SERVER", namespace: "default" },
      want: /endpoints\[2\]\.ip \(.*\) belongs to local endpoint default\/server/,
      code: "ENDPOINT_INVALID",
    },
    {
      name: "a free address of this node's pod CIDR",
      entry: { ip: "POOL", namespace: "default" },
      want: /endpoints\[2\]\.ip \(.*\) is in this node's pod CIDR .* \(local endpoints only\)/,
      code: "ENDPOINT_INVALID",
    },
    {
      name: "a field of the wrong type",
      entry: { ip: 7, namespace: "default" },
      want: /field "endpoints\[2\]\.ip" must be a string/,
      code: "API_REQUEST_INVALID",
    },
    {
      name: "a label value that is not a string",
      entry: { ip: "10.231.0.1", namespace: "default", labels: { app: 5 } },
      want: /field "endpoints\[2\]\.labels\.app" must be a string value/,
      code: "API_REQUEST_INVALID",
    },
    {
      name: "an unknown field",
      entry: { ip: "10.231.0.1", namespace: "default", color: "red" },
      want: /endpoints\[2\]\.color/,
      code: "API_REQUEST_INVALID",
    },
  ];
  for (const c of badCases) {
    test(`a request with ${c.name} at index 2 is rejected whole, names the entry, and changes nothing`, async () => {
      const before = await api.listRemoteEndpoints();
      const kernel = await kernelIpcache();
      const entry =
        c.entry["ip"] === "SERVER"
          ? { ...c.entry, ip: server }
          : c.entry["ip"] === "POOL" // an address IPAM has not handed out yet, next to the server's
            ? { ...c.entry, ip: server.replace(/\.\d+$/, ".250") }
            : c.entry;
      const good = many(2);
      const e = await rejected(api.request("PUT", "/v1/remote-endpoints", { endpoints: [...good, entry] }));
      assert.equal(e.code, c.code);
      assert.match(e.message, c.want);
      assert.deepEqual(await api.listRemoteEndpoints(), before);
      assert.equal(await kernelIpcache(), kernel);
    });
  }

  test("bulk upsert then bulk delete: one enforce each; unknown addresses in a delete are left alone", async () => {
    const eps = many(300);
    const applied = lab.agent.status().controllers.find((c) => c.name === "remote-endpoints")?.desired ?? 0;
    const r = await api.upsertRemoteEndpoints(eps);
    assert.equal(r.changed, 300);
    assert.equal(
      lab.agent.status().controllers.find((c) => c.name === "remote-endpoints")?.desired,
      applied + 1,
    );
    const ipc = (await api.request("GET", "/v1/ipcache")) as { prefix: string; identity: number }[];
    const ids = new Set(ipc.filter((e) => e.prefix.startsWith("10.230.")).map((e) => e.identity));
    assert.equal(ipc.filter((e) => e.prefix.startsWith("10.230.")).length, 300);
    assert.equal(ids.size, 7, "one identity per label set");
    assert.match(await kernelIpcache(), /10\.230\.1\.43 : 0x/);
    const d = await api.deleteRemoteEndpoints([
      ...eps.slice(0, 299).map((e) => e.ip),
      "10.99.0.1",
      "fd00:0::1",
    ]);
    assert.deepEqual([d.changed, d.unchanged], [299, 2]);
    const left = (await api.listRemoteEndpoints()).map((e) => e.ip).filter((ip) => ip.startsWith("10.230."));
    assert.deepEqual(left, ["10.230.1.43"]);
    assert.doesNotMatch(await kernelIpcache(), /10\.230\.0\.1 : 0x/);
    const bad = await rejected(api.deleteRemoteEndpoints(["10.230.1.43", "nope"]));
    assert.match(bad.message, /ips\[1\] "nope" is not an IP address/);
    assert.equal((await api.listRemoteEndpoints()).filter((e) => e.ip === "10.230.1.43").length, 1);
  });

  test("a restarted agent restores them before its first enforce: same identities, nothing to change in the kernel, an unreadable record skipped and shown", async () => {
    await api.upsertRemoteEndpoints(many(300));
    const listed = await api.listRemoteEndpoints();
    const kernel = await kernelIpcache();
    await lab.stopAgent();
    // In the store under remote-endpoints/<ip>, written in transactions of at most STORE_TXN_OPS.
    const store = await EmbeddedStore.open({
      dir: join(lab.options.stateDir, "store"),
      logger: pino({ level: "silent" }),
    });
    try {
      const kvs = (await store.list(REMOTE_ENDPOINTS_KEY)).kvs;
      assert.equal(kvs.length, listed.length);
      assert.ok(kvs.some((kv) => kv.key === `${REMOTE_ENDPOINTS_KEY}${WEB}`));
      const perRevision = new Map<number, number>();
      for (const kv of kvs) perRevision.set(kv.modRevision, (perRevision.get(kv.modRevision) ?? 0) + 1);
      assert.ok(Math.max(...perRevision.values()) <= STORE_TXN_OPS);
      assert.ok(perRevision.size < kvs.length / 50, "written in bulk, not one key at a time");
      // A record that cannot be read is skipped (and shown), not a reason to stop enforcing the rest.
      await store.put(`${REMOTE_ENDPOINTS_KEY}10.240.0.1`, "{not json");
    } finally {
      await store.close();
    }
    await lab.startAgent();
    assert.equal(lab.agent.status().lastApply.ops, 0, "the first enforce after restart changed the kernel");
    const ctl = lab.agent.status().controllers.find((c) => c.name === "remote-endpoints");
    assert.match(ctl?.lastError?.message ?? "", /JSON/);
    assert.deepEqual(await api.listRemoteEndpoints(), listed);
    assert.equal(await kernelIpcache(), kernel);
    assert.deepEqual(
      [await outside.udp(server, 53, T, WEB), await outside.udp(server, 53, T, OTHER)],
      ["ok", "timeout"],
    );
  });
});
