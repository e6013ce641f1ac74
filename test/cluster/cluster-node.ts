// A node of a test cluster on one etcd: its agent options (cluster mode) and a bare registration.
import { pino } from "pino";
import type { ClusterContext } from "../../src/cluster/context.js";
import { nodeKey } from "../../src/cluster/keys.js";
import type { ClusterOptions } from "../../src/cluster/session.js";
import type { EtcdHandle } from "../../src/lab/etcd.js";

/** The agent's cluster mode (`--cluster-store`) for node `node` on this etcd, with its pod CIDR configured. */
export function clusterOpts(etcd: EtcdHandle, node: string, podCidr4: string): ClusterOptions {
  return {
    endpoints: [etcd.endpoint],
    node,
    nodeIp: {},
    labels: {},
    podCidrs: { configured: { ipv4: podCidr4 } },
    // Short: a stopped agent releases (not revokes) its lease, and later tests wait for nodes that are alive.
    leaseTtlSeconds: 4,
    tunnel: "native",
  };
}

/** A node of the test cluster: its own etcd client and lease, registered under cluster/nodes/. */
export async function clusterNode(
  etcd: EtcdHandle,
  node: string,
): Promise<ClusterContext & { close(): Promise<void> }> {
  const kv = etcd.store();
  const lease = await kv.grantLease(15, () => undefined);
  await kv.txn({
    compare: [],
    ops: [{ type: "put", key: nodeKey(node), value: JSON.stringify({ v: 1, name: node }), lease: lease.id }],
  });
  return {
    kv,
    lease,
    node,
    nodeIp: {},
    logger: pino({ level: "silent" }),
    close: async () => {
      await lease.revoke().catch(() => undefined);
      await kv.close();
    },
  };
}
