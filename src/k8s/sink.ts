/**
 * What the watcher writes to: the agent's own entry points, the ones its API
 * calls (validate, persist in the store, change the engine, enforce). The
 * Agent satisfies this interface as it is; nothing here duplicates a
 * controller.
 */
import type { NodeKind } from "../agent/controllers/nodes.js";
import type { PolicyRef, PolicyResource } from "../policy/types.js";
import type { RemoteEndpointSpec, ServiceSpec } from "../policy/query.js";

export interface K8sSink {
  applyPolicyResources(resources: readonly PolicyResource[], file: string): Promise<unknown>;
  deletePolicyRefs(refs: readonly PolicyRef[], file: string): Promise<unknown>;
  setNamespaceLabels(name: string, labels: Record<string, string>): Promise<void>;
  setNodeAddress(ip: string, kind: NodeKind): Promise<void>;
  deleteNodeAddress(ip: string): Promise<void>;
  upsertService(spec: ServiceSpec): Promise<void>;
  deleteService(namespace: string, name: string): Promise<void>;
  labelEndpoint(
    namespace: string,
    name: string,
    labels: Record<string, string>,
    replace: boolean,
  ): Promise<unknown>;
  getEndpoint(namespace: string, name: string): { labels: Record<string, string> };
  readonly remoteEndpoints: {
    upsert(entries: readonly RemoteEndpointSpec[]): Promise<unknown>;
    delete(ips: readonly string[]): Promise<unknown>;
  };
  readonly engine: {
    readonly config: { readonly meshAuth: boolean };
    /** The policies the agent holds (restored from its store too), with the file they came from. */
    listPolicies(): readonly Pick<PolicyResource, "ref" | "source">[];
  };
}
