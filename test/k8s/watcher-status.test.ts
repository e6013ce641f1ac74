/**
 * The watcher in the agent's status, through the agent's real API socket: an
 * expired service-account token (the recorded Kubernetes API answers 401)
 * shows as `kubernetes.state: failing` with the HTTP 401 error; once the
 * token file holds the new token (as the kubelet rotates it), the watcher
 * reads it again and the state is ok. Needs root (the e2e lab).
 */
import assert from "node:assert/strict";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AgentClient } from "../../src/agent/client.js";
import { AgentLab, rootSkipReason } from "../agent/e2e/harness.js";
import { RecordedApi } from "./recorded-api.js";
import { until } from "../support/until.js";

const skip = rootSkipReason();
const CNP = "/apis/cilium.io/v2/ciliumnetworkpolicies";

describe(
  "Kubernetes watcher state in the agent's status (recorded Kubernetes API, no apiserver) (root)",
  { skip: skip ?? false },
  () => {
    let lab: AgentLab;
    let api: RecordedApi;
    let dir: string;
    let token: string;
    const rotate = async (t: string): Promise<void> => {
      await writeFile(`${token}.new`, t);
      await rename(`${token}.new`, token);
    };
    const k8s = async (): Promise<Record<string, unknown>> => {
      const c = new AgentClient({ socketPath: lab.options.socketPath });
      const s = (await c.request("GET", "/v1/status")) as { kubernetes?: Record<string, unknown> };
      return s.kubernetes ?? {};
    };

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "membrane-k8s-status-"));
      token = join(dir, "token");
      await writeFile(token, "first\n");
      api = new RecordedApi({ goneAs: "event", token: "first" });
      await api.start();
      await api.writeKubeconfig(join(dir, "kubeconfig"), { tokenFile: token });
      lab = await AgentLab.start("k8sst", {
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

    test("an expired token shows in the agent's status as HTTP 401; the rotated token file is read again and the watcher goes on", async () => {
      assert.equal((await k8s())["state"], "ok");
      api.acceptToken("second"); // the old token expired
      api.dropStreams();
      await until("the failing state", async () => (await k8s())["state"] === "failing", 30_000);
      const st = await k8s();
      assert.match(JSON.stringify(st["lastError"]), /HTTP 401/);
      assert.ok(!JSON.stringify(st).includes("first"), "the token is not shown");
      await rotate("second");
      api.put(CNP, {
        metadata: { name: "after-rotation", namespace: "default" },
        spec: { endpointSelector: { matchLabels: { app: "x" } }, ingress: [{}] },
      });
      await until(
        "the policy after the rotation",
        async () => lab.agent.listPolicies().some((p) => p.name === "after-rotation"),
        30_000,
      );
      await until("the state no longer failing", async () => (await k8s())["state"] !== "failing", 30_000);
      assert.ok(api.requests.at(-1)?.authorization === "Bearer second");
    });
  },
);
