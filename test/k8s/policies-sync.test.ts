/**
 * PoliciesSync (src/k8s/policies-sync.ts) against a recording sink (a stand-in for the agent's entry
 * points; the agent itself is driven in watcher-agent.test.ts): a list removes the Kubernetes
 * policies that an earlier agent run applied and that were deleted while the agent was down.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import pino from "pino";
import { WATCHED } from "../../src/k8s/resources.js";
import { PoliciesSync } from "../../src/k8s/policies-sync.js";
import type { K8sSink } from "../../src/k8s/sink.js";
import type { PolicyRef, PolicyResource } from "../../src/policy/types.js";

const CNP = WATCHED.find((r) => r.kind === "CiliumNetworkPolicy");

function cnp(name: string): Record<string, unknown> {
  return {
    metadata: { name, namespace: "default", resourceVersion: "1" },
    spec: { endpointSelector: { matchLabels: { app: "db" } }, ingress: [{}] },
  };
}

function recordingSink(stored: Pick<PolicyResource, "ref" | "source">[]) {
  const applied: string[] = [];
  const deleted: PolicyRef[] = [];
  const unused = (): Promise<void> => Promise.reject(new Error("not used here"));
  const sink: K8sSink = {
    applyPolicyResources: (res) => {
      applied.push(...res.map((r) => r.ref.name));
      return Promise.resolve();
    },
    deletePolicyRefs: (refs) => {
      deleted.push(...refs);
      return Promise.resolve();
    },
    setNamespaceLabels: unused,
    setNodeAddress: unused,
    deleteNodeAddress: unused,
    upsertService: unused,
    deleteService: unused,
    labelEndpoint: unused,
    getEndpoint: () => ({ labels: {} }),
    remoteEndpoints: { upsert: unused, delete: unused },
    engine: { config: { meshAuth: false }, listPolicies: () => stored },
  };
  return { sink, applied, deleted };
}

test("a list removes the Kubernetes policies a previous agent run applied that are gone now; user-applied ones stay", async () => {
  assert.ok(CNP);
  const ref = (name: string): PolicyRef => ({ kind: "CiliumNetworkPolicy", namespace: "default", name });
  const { sink, applied, deleted } = recordingSink([
    // Restored from the store: applied by the watcher before the restart.
    { ref: ref("kept"), source: { file: "k8s:CiliumNetworkPolicy/default/kept", line: 1 } },
    { ref: ref("gone"), source: { file: "k8s:CiliumNetworkPolicy/default/gone", line: 1 } },
    // Applied by a user with `membrane apply`, and a policy of another kind from Kubernetes.
    { ref: ref("mine"), source: { file: "/etc/membrane/mine.yaml", line: 1 } },
    {
      ref: { kind: "NetworkPolicy", namespace: "default", name: "np" },
      source: { file: "k8s:NetworkPolicy/default/np", line: 1 },
    },
  ]);
  const sync = new PoliciesSync(CNP, sink, pino({ level: "silent" }));
  await sync.replace([cnp("kept"), cnp("new")]);
  assert.deepEqual(deleted, [ref("gone")]);
  assert.deepEqual(applied.sort(), ["kept", "new"]);
});
