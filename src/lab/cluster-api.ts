/**
 * What tests, the demo and benchmarks do to a lab cluster's nodes, through each node's agent API
 * (the same requests the CLI sends):
 *
 *   createEndpoint(n1, "server", labels)      POST /v1/endpoints
 *   applyAndWait(n1, yaml, "p.yaml")          POST /v1/policies, then GET /v1/cluster/realized until
 *                                             every live node realized it (`membrane apply --wait`)
 *   waitRemote(n2, [ip, ...])                 GET /v1/remote-endpoints until n2 knows those pods
 *   readFlows(n2, filter)                     POST /v1/flows (`membrane observe`)
 */
import { MembraneError } from "../errors.js";
import type { ApplyReport } from "../agent/controllers/policies.js";
import type { EndpointView } from "../agent/controllers/endpoint-record.js";
import { waitRealized, type NodeRealized } from "../cluster/realized.js";
import { isFlowRecord, type Flow, type FlowRecord } from "../observe/flow.js";
import type { FlowFilterSet } from "../observe/filter.js";
import type { LabNode } from "./cluster.js";

export async function createEndpoint(
  node: LabNode,
  name: string,
  labels: Readonly<Record<string, string>>,
  namespace = "default",
): Promise<EndpointView> {
  return (await node.client.request("POST", "/v1/endpoints", { name, namespace, labels })) as EndpointView;
}

/** Applies through `node` and waits until every live node realized the apply (CLUSTER_NOT_REALIZED else). */
export async function applyAndWait(
  node: LabNode,
  text: string,
  file: string,
  timeoutMs = 30_000,
): Promise<{ report: ApplyReport; nodes: readonly NodeRealized[] }> {
  const report = (await node.client.request("POST", "/v1/policies", { text, file })) as ApplyReport;
  if (report.clusterRevision === undefined) {
    throw new MembraneError(
      "CLUSTER_INVALID",
      `Cannot wait for the apply on ${node.name}: its agent is not in cluster mode`,
    );
  }
  const read = async (): Promise<NodeRealized[]> =>
    ((await node.client.request("GET", "/v1/cluster/realized")) as { nodes: NodeRealized[] }).nodes;
  return { report, nodes: await waitRealized(read, report.clusterRevision, timeoutMs) };
}

/** Waits until `node` has every address in `ips` among its remote endpoints (other nodes' pods). */
export async function waitRemote(node: LabNode, ips: readonly string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs; // safety net
  for (;;) {
    const known = new Set((await node.client.listRemoteEndpoints()).map((r) => r.ip));
    const missing = ips.filter((ip) => !known.has(ip));
    if (missing.length === 0) return;
    if (Date.now() > deadline) {
      throw new MembraneError(
        "CLUSTER_NOT_REALIZED",
        `Cannot confirm that node ${node.name} learned the remote endpoints ${missing.join(", ")} within ${timeoutMs / 1000} s`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The flows `node` observed (its ring), filtered as `membrane observe` filters. */
export async function readFlows(node: LabNode, filter: FlowFilterSet = {}): Promise<Flow[]> {
  const recs = (await node.client.request("POST", "/v1/flows", { filter })) as FlowRecord[];
  return recs.filter(isFlowRecord).map((r) => r.flow);
}
