/**
 * Deletions reach the agent: Services, Nodes and other nodes' pods (remote
 * endpoints) deleted in Kubernetes are removed from the agent, from its
 * store and from the ipcache the kernel holds; those deleted while the agent
 * was down are removed by the first list after its restart, while what a
 * user added through the agent's API stays. A real agent (the e2e lab) run
 * with `k8s` against the recorded Kubernetes API. Needs root.
 *
 *   recorded API --(events | list after restart)--> watcher --> controllers --> store, ipcache, nftables
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { EmbeddedStore } from "../../src/store/embedded.js";
import { AgentLab, rootSkipReason } from "../agent/e2e/harness.js";
import { RecordedApi } from "./recorded-api.js";
import { until } from "../support/until.js";

const skip = rootSkipReason();
const PODS = "/api/v1/pods";
const NODES = "/api/v1/nodes";
const SVC = "/api/v1/services";
const SLICES = "/apis/discovery.k8s.io/v1/endpointslices";

const pod = (name: string, node: string, ip: string, app = "client"): Record<string, unknown> => ({
  metadata: { name, namespace: "default", labels: { app } },
  spec: { nodeName: node },
  status: { phase: "Running", podIPs: [{ ip }] },
});
const node = (name: string, ip: string): Record<string, unknown> => ({
  metadata: { name },
  status: { addresses: [{ type: "InternalIP", address: ip }] },
});
/** A selector-less Service and its EndpointSlice: its address becomes a CIDR identity in the ipcache. */
function service(api: RecordedApi, name: string, ip: string): void {
  api.put(SVC, {
    metadata: { name, namespace: "default" },
    spec: { ports: [{ port: 80, protocol: "TCP" }] },
  });
  api.put(SLICES, {
    metadata: { name: `${name}-x1`, namespace: "default", labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4",
    endpoints: [{ addresses: [ip], conditions: { ready: true } }],
  });
}
function removeService(api: RecordedApi, name: string): void {
  api.remove(SLICES, "default", `${name}-x1`);
  api.remove(SVC, "default", name);
}

describe(
  "Kubernetes deletions reach the agent, also those made while it was down (recorded Kubernetes API, no apiserver) (root)",
  { skip: skip ?? false },
  () => {
    let lab: AgentLab;
    let api: RecordedApi;
    let dir: string;
    /** The ipcache entry of an address: "<source>:<identity>", or undefined. */
    const ipc = (ip: string): string | undefined => {
      const e = lab.agent.ipcache().find((x) => x.prefix === `${ip}/32`);
      return e && `${e.source}:${e.identity}`;
    };
    const enforced = (): boolean => lab.agent.status().controllers.every((c) => c.desired === c.realized);
    const remoteLabels = (ip: string): Record<string, string> | undefined =>
      lab.agent.remoteEndpoints.list().find((r) => r.ip === ip)?.labels;
    /** The keys under `prefix` in the agent's store (read with the agent stopped). */
    const storeKeys = async (prefix: string): Promise<string[]> => {
      const s = await EmbeddedStore.open({
        dir: join(lab.options.stateDir, "store"),
        logger: pino({ level: "silent" }),
      });
      try {
        return (await s.list(prefix)).kvs.map((kv) => kv.key);
      } finally {
        await s.close();
      }
    };

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "membrane-k8s-del-"));
      api = new RecordedApi({ goneAs: "event", token: "t0k3n" });
      await api.start();
      await api.writeKubeconfig(join(dir, "kubeconfig"));
      api.put("/api/v1/namespaces", { metadata: { name: "default" } });
      lab = await AgentLab.start("k8sdel", {
        k8s: {
          kubeconfig: join(dir, "kubeconfig"),
          nodeName: "node-a",
          resyncMs: 0,
          backoff: { initialMs: 20, maxMs: 300 },
        },
      });
      await lab.running?.k8s?.synced();
    });
    after(async () => {
      await lab?.destroy();
      await api?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test("a deleted Service, Node and remote pod leave the agent; a pod's new address and a pod now on this node too", async () => {
      service(api, "svc-a", "10.96.0.10");
      api.put(NODES, node("node-b", "10.98.0.2"));
      api.put(PODS, pod("far", "node-b", "10.99.0.5"));
      api.put(PODS, pod("mover", "node-b", "10.99.0.6"));
      await until(
        "the service, the node and the remote pods in the ipcache",
        () =>
          ipc("10.96.0.10")?.startsWith("cidr:") === true &&
          ipc("10.98.0.2") === "node:6" &&
          ipc("10.99.0.5")?.startsWith("endpoint:") === true &&
          ipc("10.99.0.6") !== undefined &&
          enforced(),
      );
      removeService(api, "svc-a");
      api.remove(NODES, "", "node-b");
      api.remove(PODS, "default", "far");
      api.put(PODS, pod("mover", "node-b", "10.99.0.16")); // a new address: the old one goes
      await until(
        `the deletes (ipcache ${JSON.stringify(lab.agent.ipcache().filter((e) => e.prefix.startsWith("10.9")))})`,
        () =>
          ipc("10.96.0.10") === undefined &&
          ipc("10.98.0.2") === undefined &&
          ipc("10.99.0.5") === undefined &&
          ipc("10.99.0.6") === undefined &&
          ipc("10.99.0.16") !== undefined &&
          enforced(),
      );
      api.remove(PODS, "default", "mover");
      api.put(PODS, pod("mover", "node-a", "10.99.0.16")); // the same pod name, now on this node
      await until(
        "a pod of this node is no remote endpoint",
        () => ipc("10.99.0.16") === undefined && enforced(),
      );
      assert.deepEqual(await lab.agent.datapathDiff(), []);
      await lab.stopAgent();
      try {
        assert.deepEqual(await storeKeys("services/"), [], "no service left in the store");
        assert.deepEqual(await storeKeys("nodes/"), [], "no node address left in the store");
        assert.deepEqual(await storeKeys("remote-endpoints/"), []);
      } finally {
        await lab.startAgent();
        await lab.running?.k8s?.synced();
      }
    });

    test("after a restart, the first list removes the Services, Nodes and remote pods deleted while the agent was down; the rest and the user's own stay", async () => {
      service(api, "svc-gone", "10.96.0.11");
      service(api, "svc-kept", "10.96.0.12");
      api.put(NODES, node("node-c", "10.98.0.3"));
      api.put(NODES, node("node-d", "10.98.0.4"));
      api.put(PODS, pod("gone", "node-c", "10.99.0.7"));
      api.put(PODS, pod("kept", "node-c", "10.99.0.8"));
      api.put(PODS, pod("moved", "node-c", "10.99.0.9"));
      api.put(PODS, pod("homed", "node-c", "10.99.0.10"));
      // Added by a user through the agent's API, not from Kubernetes.
      await lab.agent.remoteEndpoints.upsert([
        { ip: "10.55.0.1", namespace: "default", labels: { app: "db" } },
      ]);
      await lab.agent.upsertService({ name: "mine", namespace: "default", ports: [], ips: ["10.96.0.99"] });
      await until(
        "everything in the ipcache",
        () =>
          ["10.96.0.11", "10.96.0.12", "10.98.0.3", "10.98.0.4"].every((ip) => ipc(ip) !== undefined) &&
          ["10.99.0.7", "10.99.0.8", "10.99.0.9", "10.99.0.10"].every((ip) => ipc(ip) !== undefined) &&
          enforced(),
      );

      await lab.stopAgent();
      removeService(api, "svc-gone");
      api.remove(NODES, "", "node-c");
      api.remove(PODS, "default", "gone");
      // Its address is reused at once by another pod, with other labels: it must not keep the old identity.
      api.put(PODS, pod("newcomer", "node-d", "10.99.0.7", "other"));
      api.put(PODS, pod("moved", "node-c", "10.99.0.19"));
      api.remove(PODS, "default", "homed");
      api.put(PODS, pod("homed", "node-a", "10.99.0.10"));
      await lab.startAgent();
      await lab.running?.k8s?.synced();
      await until("the first lists enforced", enforced);

      assert.equal(ipc("10.96.0.11"), undefined, "the Service deleted while down is gone");
      assert.equal(ipc("10.98.0.3"), undefined, "the Node deleted while down is gone");
      assert.equal(ipc("10.99.0.9"), undefined, "the old address of a pod that moved is gone");
      assert.equal(ipc("10.99.0.10"), undefined, "a pod now on this node is no remote endpoint");
      assert.deepEqual(
        remoteLabels("10.99.0.7"),
        { app: "other" },
        "a reused address has its new pod's labels",
      );
      assert.ok(ipc("10.96.0.12")?.startsWith("cidr:"), "the Service kept");
      assert.equal(ipc("10.98.0.4"), "node:6", "the Node kept");
      assert.ok(ipc("10.99.0.8")?.startsWith("endpoint:"), "the pod kept");
      assert.ok(ipc("10.99.0.19")?.startsWith("endpoint:"), "the pod's new address");
      assert.deepEqual(remoteLabels("10.55.0.1"), { app: "db" }, "the user's remote endpoint stays");
      assert.ok(ipc("10.96.0.99")?.startsWith("cidr:"), "the user's service stays");
      assert.deepEqual(await lab.agent.datapathDiff(), []);
    });
  },
);
