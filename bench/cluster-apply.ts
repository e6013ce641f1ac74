/**
 * Policy apply -> enforced on every real node: the policy is written to etcd
 * as `membrane apply --cluster-store` writes it (applyToCluster), then the
 * bench watches `cluster/status/` until each real node reports a realized
 * revision >= the write's (a node writes it only after its kernel took the
 * change: src/cluster/resources.ts). Two texts alternate (the port changes),
 * so every apply changes the kernel of every node (each has a prober pod the
 * policy selects).
 */
import { pino } from "pino";
import { applyToCluster } from "../src/cli/commands/apply-cluster.js";
import { CLUSTER_KEYS, type NodeStatusV1 } from "../src/cluster/keys.js";
import { PrefixMirror } from "../src/cluster/mirror.js";
import { parsePolicies } from "../src/policy/api/index.js";
import type { EtcdStore } from "../src/store/etcd.js";

export const applyPolicy = (i: number): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: cb-apply
  namespace: default
spec:
  endpointSelector:
    matchLabels: {app: cb-probe}
  ingress:
  - fromEndpoints:
    - matchLabels: {app: sim-${i % 7}}
    toPorts:
    - ports: [{port: "${1000 + i}", protocol: TCP}]
`;

/** The policy that lets each prober reach only app=cb-new (the propagation's packet check). */
export const PROBE_POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: cb-prop
  namespace: default
spec:
  endpointSelector:
    matchLabels: {app: cb-probe}
  egress:
  - toEndpoints:
    - matchLabels: {app: cb-new}
`;

/** Watches every node's realized revision (cluster/status/<node>). */
export class RealizedWatch {
  private readonly mirror: PrefixMirror;
  private waiters: (() => void)[] = [];

  constructor(kv: EtcdStore) {
    this.mirror = new PrefixMirror(kv, CLUSTER_KEYS.status, pino({ level: "silent" }), () => {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
  }

  start(): Promise<void> {
    return this.mirror.start();
  }

  stop(): Promise<void> {
    return this.mirror.stop();
  }

  realized(node: string): number {
    const e = this.mirror.entries.get(CLUSTER_KEYS.status + node);
    if (!e) return 0;
    try {
      return (JSON.parse(e.value) as NodeStatusV1).realizedRevision ?? 0;
    } catch {
      return 0;
    }
  }

  /** Resolves with performance.now() when every node of `nodes` realized `rev` (false at `deadline`). */
  async until(nodes: readonly string[], rev: number, deadline: number): Promise<number | false> {
    for (;;) {
      if (nodes.every((n) => this.realized(n) >= rev)) return performance.now();
      if (performance.now() > deadline) return false;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 250);
      });
    }
  }
}

/** Applies `text` straight to etcd; resolves with the revision every node must realize. */
export async function applyText(kv: EtcdStore, text: string): Promise<number> {
  const r = await applyToCluster(kv, parsePolicies(text, "bench.yaml"), "apply");
  return r.clusterRevision ?? r.revision;
}
