/**
 * The Kubernetes resources the watcher lists and watches: one table, read by
 * the watcher (paths) and by the RBAC test (deploy/kubernetes/rbac.yaml must
 * grant list and watch on each), so the two cannot drift apart.
 */

export type ResourceName =
  | "namespaces"
  | "pods"
  | "nodes"
  | "services"
  | "endpointslices"
  | "networkpolicies"
  | "ciliumnetworkpolicies"
  | "ciliumclusterwidenetworkpolicies";

export interface WatchedResource {
  readonly resource: ResourceName;
  /** API group ("" = the core group). */
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  /** Only for what it says in logs: cluster-scoped objects have no namespace. */
  readonly namespaced: boolean;
}

/** In the order a first sync applies them: labels of namespaces before pods, policies last. */
export const WATCHED: readonly WatchedResource[] = [
  { resource: "namespaces", group: "", version: "v1", kind: "Namespace", namespaced: false },
  { resource: "nodes", group: "", version: "v1", kind: "Node", namespaced: false },
  { resource: "pods", group: "", version: "v1", kind: "Pod", namespaced: true },
  { resource: "services", group: "", version: "v1", kind: "Service", namespaced: true },
  {
    resource: "endpointslices",
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    namespaced: true,
  },
  {
    resource: "networkpolicies",
    group: "networking.k8s.io",
    version: "v1",
    kind: "NetworkPolicy",
    namespaced: true,
  },
  {
    resource: "ciliumnetworkpolicies",
    group: "cilium.io",
    version: "v2",
    kind: "CiliumNetworkPolicy",
    namespaced: true,
  },
  {
    resource: "ciliumclusterwidenetworkpolicies",
    group: "cilium.io",
    version: "v2",
    kind: "CiliumClusterwideNetworkPolicy",
    namespaced: false,
  },
];

export function apiVersionOf(r: WatchedResource): string {
  return r.group === "" ? r.version : `${r.group}/${r.version}`;
}

/** The collection path across all namespaces: /api/v1/pods, /apis/cilium.io/v2/ciliumnetworkpolicies. */
export function collectionPath(r: WatchedResource): string {
  return r.group === "" ? `/api/${r.version}/${r.resource}` : `/apis/${r.group}/${r.version}/${r.resource}`;
}
