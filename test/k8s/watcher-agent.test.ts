/**
 * A real agent (the e2e lab: node and endpoints as network namespaces, its
 * own nftables table) run with `k8s` (= `membrane agent --kubeconfig`) against
 * the recorded Kubernetes API, through a real `@kubernetes/client-node`
 * KubeConfig. Verdicts are real packets. Needs root.
 *
 *   recorded API --list/watch--> agent's watcher --> controllers --> nftables --> probes
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AgentLab, rootSkipReason, T } from "../agent/e2e/harness.js";
import { RecordedApi } from "./recorded-api.js";
import { until } from "../support/until.js";

const skip = rootSkipReason();
const CNP = "/apis/cilium.io/v2/ciliumnetworkpolicies";
const KNP = "/apis/networking.k8s.io/v1/networkpolicies";
const NS = "/api/v1/namespaces";
const PODS = "/api/v1/pods";

const serverFrom = (name: string, from: Record<string, string>): Record<string, unknown> => ({
  metadata: {
    name,
    namespace: "default",
    uid: "0b8e",
    creationTimestamp: "2026-12-04T21:00:00Z",
    generation: 1,
  },
  spec: {
    endpointSelector: { matchLabels: { app: "server" } },
    ingress: [
      { fromEndpoints: [{ matchLabels: from }], toPorts: [{ ports: [{ port: "80", protocol: "TCP" }] }] },
    ],
  },
});

describe(
  "Kubernetes watcher drives a real agent (recorded Kubernetes API, no apiserver) (root)",
  { skip: skip ?? false },
  () => {
    let lab: AgentLab;
    let api: RecordedApi;
    let dir: string;
    const policies = (): string[] =>
      lab.agent.listPolicies().map((p) => `${p.kind}/${p.namespace ?? ""}/${p.name}`);
    /** Every controller's accepted changes are in the kernel. */
    const enforced = (): boolean => lab.agent.status().controllers.every((c) => c.desired === c.realized);
    const has = (ref: string) => (): boolean => policies().includes(ref) && enforced();
    const none = (): boolean => policies().length === 0 && enforced();
    const tcp = (from: string, to: string): Promise<string> => lab.ep(from).probe.tcp(lab.ep(to).ip, 80, T);

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "membrane-k8s-e2e-"));
      api = new RecordedApi({ goneAs: "event", token: "t0k3n" });
      await api.start();
      await api.writeKubeconfig(join(dir, "kubeconfig"));
      api.put(NS, { metadata: { name: "default", labels: { "kubernetes.io/metadata.name": "default" } } });
      api.put(NS, { metadata: { name: "dev", labels: { team: "red" } } });
      lab = await AgentLab.start("k8s", {
        k8s: {
          kubeconfig: join(dir, "kubeconfig"),
          nodeName: "node-a",
          resyncMs: 0,
          backoff: { initialMs: 20, maxMs: 300 },
        },
      });
      await lab.running?.k8s?.synced();
      await lab.endpoint("server", { app: "server" }, { tcp: [80] });
      await lab.endpoint("client", { app: "client" });
      await lab.endpoint("other", { app: "other" });
      await lab.endpoint("devpod", { app: "other" }, { namespace: "dev" });
    });
    after(async () => {
      await lab?.destroy();
      await api?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test("a CiliumNetworkPolicy added through the watch is enforced on real packets; deleted, it is not", async () => {
      assert.equal(await tcp("other", "server"), "ok");
      api.put(CNP, serverFrom("server-from-client", { app: "client" }));
      await until("the policy", has("CiliumNetworkPolicy/default/server-from-client"));
      assert.equal(await tcp("client", "server"), "ok");
      assert.equal(await tcp("other", "server"), "timeout");
      api.remove(CNP, "default", "server-from-client");
      await until("the delete", none);
      assert.equal(await tcp("other", "server"), "ok");
      assert.deepEqual(await lab.agent.datapathDiff(), []);
    });

    test("a Namespace's labels from the watch reach namespace selectors", async () => {
      api.put(CNP, serverFrom("server-from-blue", { "k8s:io.cilium.k8s.namespace.labels.team": "blue" }));
      await until("the policy", has("CiliumNetworkPolicy/default/server-from-blue"));
      assert.equal(await tcp("devpod", "server"), "timeout", "dev is team red");
      api.put(NS, { metadata: { name: "dev", labels: { team: "blue" } } });
      await until("dev relabelled blue lets devpod in", async () => (await tcp("devpod", "server")) === "ok");
      assert.equal(await tcp("other", "server"), "timeout");
      api.remove(CNP, "default", "server-from-blue");
      await until("the delete", none);
    });

    test("an object that fails validation is skipped with a log line naming it; the rest continues", async () => {
      const bad = serverFrom("bad", { app: "client" });
      (bad["spec"] as Record<string, unknown>)["ingres"] = [];
      api.put(CNP, bad);
      api.put(KNP, {
        metadata: { name: "server-knp", namespace: "default" },
        spec: {
          podSelector: { matchLabels: { app: "server" } },
          ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }] }],
        },
      });
      await until("the good NetworkPolicy", has("NetworkPolicy/default/server-knp"));
      const line = lab.logs.find((l) => l["kind"] === "CiliumNetworkPolicy" && l["name"] === "bad");
      assert.ok(line, "a log line for the bad object");
      assert.equal(line["namespace"], "default");
      assert.match(String(line["err"]), /Cannot apply k8s:CiliumNetworkPolicy\/default\/bad/);
      assert.match(JSON.stringify(line["issues"]), /ingres/);
      assert.equal(line["level"], 50);
      assert.ok(!policies().includes("CiliumNetworkPolicy/default/bad"));
      assert.equal(await tcp("other", "server"), "timeout");
      assert.equal(await tcp("client", "server"), "ok");
      api.remove(CNP, "default", "bad");
    });

    test("410 Gone -> relist: a policy deleted while the watch was gone is removed", async () => {
      const lists = api.requests.filter((r) => r.path === KNP && !r.watch).length;
      api.silently(KNP, (objs) => objs.delete("default/server-knp"));
      api.compact();
      api.expireWatches();
      await until(
        "the relist to remove it",
        () => !policies().includes("NetworkPolicy/default/server-knp") && enforced(),
      );
      assert.equal(api.requests.filter((r) => r.path === KNP && !r.watch).length, lists + 1);
      assert.equal(await tcp("other", "server"), "ok");
    });

    test("the watcher reconnects with backoff when the server drops the stream, and misses nothing", async () => {
      const failures = (): number => lab.running?.k8s?.stats().ciliumnetworkpolicies.failures ?? 0;
      const before = failures();
      api.refuse(3);
      api.dropStreams();
      api.put(CNP, serverFrom("after-drop", { app: "client" }));
      await until("the policy after reconnecting, enforced", has("CiliumNetworkPolicy/default/after-drop"));
      assert.ok(failures() > before, "the refused attempts were counted and backed off");
      assert.equal(await tcp("other", "server"), "timeout");
      assert.ok(api.requests.every((r) => r.authorization === "Bearer t0k3n"));
      api.remove(CNP, "default", "after-drop");
      await until("the delete", none);
    });

    test("pods: labels of this node's pods reach their endpoints; other nodes' pods become remote endpoints", async () => {
      api.put(PODS, {
        metadata: {
          name: "other",
          namespace: "default",
          labels: { app: "client", "pod-template-hash": "7f9c" },
        },
        spec: { nodeName: "node-a" },
        status: { phase: "Running", podIP: lab.ep("other").ip, podIPs: [{ ip: lab.ep("other").ip }] },
      });
      api.put(PODS, {
        metadata: { name: "far", namespace: "default", labels: { app: "client" } },
        spec: { nodeName: "node-b", serviceAccountName: "web" },
        status: { phase: "Running", podIPs: [{ ip: "10.99.0.5" }] },
      });
      await until(
        "the pod's labels",
        () => lab.agent.getEndpoint("default", "other").labels["app"] === "client",
      );
      assert.deepEqual(lab.agent.getEndpoint("default", "other").labels, { app: "client" });
      await until("the remote pod", () => lab.agent.remoteEndpoints.list().some((r) => r.ip === "10.99.0.5"));
      const far = lab.agent.remoteEndpoints.list().find((r) => r.ip === "10.99.0.5");
      assert.deepEqual(far?.labels, { app: "client" });
      assert.equal(far?.serviceAccount, "web");
      assert.equal(lab.running?.k8s?.podLabels("default", "other")?.["app"], "client");
      api.remove(PODS, "default", "far");
      await until(
        "the remote pod gone",
        () => !lab.agent.remoteEndpoints.list().some((r) => r.ip === "10.99.0.5"),
      );
    });
    test("nodes and the API server's EndpointSlice reach the ipcache as remote-node and kube-apiserver", async () => {
      const ipc = (ip: string): number | undefined =>
        lab.agent.ipcache().find((e) => e.prefix === `${ip}/32`)?.identity;
      api.put("/api/v1/nodes", {
        metadata: { name: "node-b" },
        status: {
          addresses: [
            { type: "InternalIP", address: "10.98.0.2" },
            { type: "Hostname", address: "node-b" },
          ],
        },
      });
      api.put("/api/v1/nodes", {
        metadata: { name: "node-a" },
        status: { addresses: [{ type: "InternalIP", address: "10.98.0.1" }] },
      });
      api.put("/apis/discovery.k8s.io/v1/endpointslices", {
        metadata: {
          name: "kubernetes",
          namespace: "default",
          labels: { "kubernetes.io/service-name": "kubernetes" },
        },
        addressType: "IPv4",
        endpoints: [{ addresses: ["10.97.0.1"], conditions: { ready: true } }],
      });
      await until(
        "remote-node (6) and kube-apiserver (7)",
        () => ipc("10.98.0.2") === 6 && ipc("10.97.0.1") === 7,
      ).catch((e: unknown) => {
        throw new Error(
          `${String(e)}; ipcache ${JSON.stringify(lab.agent.ipcache().filter((x) => /^10\.9[78]/.test(x.prefix)))}`,
        );
      });
      assert.equal(ipc("10.98.0.1"), undefined, "this node's own address is the host's, not remote-node");
    });
  },
);
