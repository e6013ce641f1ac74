/**
 * Kubernetes objects -> what the agent's controllers take. Pure: no I/O.
 * Each reader checks the fields it uses and throws a MembraneError naming
 * the object and field; the watcher logs it and goes on with the rest.
 *
 *   Pod            -> labels of a local endpoint, or a remote endpoint per pod IP
 *   Namespace      -> namespace labels (namespace selectors)
 *   Node           -> remote-node addresses (InternalIP, ExternalIP)
 *   Service        -> ServiceSpec (selector, labels, ports); EndpointSlices -> ips of a selector-less one
 *   EndpointSlice of default/kubernetes -> kube-apiserver addresses
 *   NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy -> policy text for parsePolicies
 */
import { MembraneError } from "../errors.js";
import { addrString, parseAddr } from "../labels/cidr.js";
import type { ServiceSpec } from "../policy/query.js";
import type { KObject } from "./api.js";
import { apiVersionOf, type WatchedResource } from "./resources.js";

/**
 * Pod labels that change with every rollout or pod and would give every pod
 * its own identity: left out of identities, as Cilium's default label filter does.
 */
export const IGNORED_POD_LABELS: readonly string[] = [
  "pod-template-hash",
  "controller-revision-hash",
  "pod-template-generation",
  "controller-uid",
  "batch.kubernetes.io/controller-uid",
  "statefulset.kubernetes.io/pod-name",
];

/** The label of an EndpointSlice naming its service. */
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

export interface ObjectId {
  readonly name: string;
  /** "" for a cluster-scoped object. */
  readonly namespace: string;
}

export interface PodInfo extends ObjectId {
  readonly labels: Record<string, string>;
  readonly ips: readonly string[];
  readonly nodeName: string;
  readonly hostNetwork: boolean;
  /** Succeeded or Failed: its addresses may be given to another pod. */
  readonly terminated: boolean;
  readonly serviceAccount?: string;
}

export interface SliceInfo extends ObjectId {
  readonly service: string;
  readonly ips: readonly string[];
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function bad(kind: string, id: string, path: string, why: string): MembraneError {
  return new MembraneError("K8S_API_FAILED", `Cannot read ${kind} ${id}: ${path} ${why}`, {
    location: { path },
  });
}

/** The object's name and namespace; throws when the name is missing. */
export function objectId(kind: string, o: KObject): ObjectId {
  const m = o["metadata"];
  if (!isRecord(m) || typeof m["name"] !== "string" || m["name"] === "")
    throw bad(kind, "(no name)", "metadata.name", "is missing");
  const ns = m["namespace"];
  return { name: m["name"], namespace: typeof ns === "string" ? ns : "" };
}

export function idText(id: ObjectId): string {
  return id.namespace === "" ? id.name : `${id.namespace}/${id.name}`;
}

/** metadata.labels as strings (Kubernetes allows nothing else). */
export function labelsOf(kind: string, o: KObject): Record<string, string> {
  const id = objectId(kind, o);
  const l = (o["metadata"] as Record<string, unknown>)["labels"];
  if (l === undefined || l === null) return {};
  if (!isRecord(l)) throw bad(kind, idText(id), "metadata.labels", "is not a map");
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(l)) {
    if (typeof v !== "string") throw bad(kind, idText(id), `metadata.labels.${k}`, "is not a string");
    out[k] = v;
  }
  return out;
}

/** A canonical address text, or an error naming the field. */
function canonical(kind: string, id: ObjectId, path: string, v: unknown): string {
  const a = typeof v === "string" ? parseAddr(v) : undefined;
  if (!a) throw bad(kind, idText(id), path, `${JSON.stringify(v)?.slice(0, 60)} is not an IP address`);
  return addrString(a.family, a.value);
}

export function podInfo(o: KObject): PodInfo {
  const id = objectId("Pod", o);
  const labels = labelsOf("Pod", o);
  for (const k of IGNORED_POD_LABELS) delete labels[k];
  const spec = isRecord(o["spec"]) ? o["spec"] : {};
  const status = isRecord(o["status"]) ? o["status"] : {};
  const ips = new Set<string>();
  const podIPs = status["podIPs"];
  if (Array.isArray(podIPs)) {
    podIPs.forEach((p, i) =>
      ips.add(canonical("Pod", id, `status.podIPs[${i}].ip`, isRecord(p) ? p["ip"] : p)),
    );
  } else if (status["podIP"] !== undefined && status["podIP"] !== "") {
    ips.add(canonical("Pod", id, "status.podIP", status["podIP"]));
  }
  const sa = spec["serviceAccountName"];
  return {
    ...id,
    labels,
    ips: [...ips],
    nodeName: typeof spec["nodeName"] === "string" ? spec["nodeName"] : "",
    hostNetwork: spec["hostNetwork"] === true,
    terminated: status["phase"] === "Succeeded" || status["phase"] === "Failed",
    ...(typeof sa === "string" && sa !== "" ? { serviceAccount: sa } : {}),
  };
}

/** A Node's InternalIP and ExternalIP addresses. */
export function nodeAddresses(o: KObject): { name: string; ips: string[] } {
  const id = objectId("Node", o);
  const status = isRecord(o["status"]) ? o["status"] : {};
  const addrs = Array.isArray(status["addresses"]) ? status["addresses"] : [];
  const ips = new Set<string>();
  addrs.forEach((a, i) => {
    if (!isRecord(a) || (a["type"] !== "InternalIP" && a["type"] !== "ExternalIP")) return;
    ips.add(canonical("Node", id, `status.addresses[${i}].address`, a["address"]));
  });
  return { name: id.name, ips: [...ips] };
}

/** The ready addresses of an EndpointSlice and the service it belongs to ("" if none). */
export function sliceInfo(o: KObject): SliceInfo {
  const id = objectId("EndpointSlice", o);
  const service = labelsOf("EndpointSlice", o)[SERVICE_NAME_LABEL] ?? "";
  const eps = Array.isArray(o["endpoints"]) ? o["endpoints"] : [];
  const ips = new Set<string>();
  eps.forEach((e, i) => {
    if (!isRecord(e)) return;
    const cond = isRecord(e["conditions"]) ? e["conditions"] : {};
    if (cond["ready"] === false) return; // as kube-proxy: unknown readiness counts as ready
    const addrs = Array.isArray(e["addresses"]) ? e["addresses"] : [];
    addrs.forEach((a, j) => ips.add(canonical("EndpointSlice", id, `endpoints[${i}].addresses[${j}]`, a)));
  });
  return { ...id, service, ips: [...ips] };
}

/**
 * A Service as the services controller takes it. A selector-less service's
 * backends are the ready addresses of its EndpointSlices; ExternalName
 * services have none (undefined: nothing to tell the agent).
 */
export function serviceSpec(o: KObject, slices: readonly SliceInfo[]): ServiceSpec | undefined {
  const id = objectId("Service", o);
  const spec = isRecord(o["spec"]) ? o["spec"] : {};
  if (spec["type"] === "ExternalName") return undefined;
  const ports = (Array.isArray(spec["ports"]) ? spec["ports"] : []).map((p, i) => {
    const port = isRecord(p) ? p["port"] : undefined;
    const proto = isRecord(p) && p["protocol"] !== undefined ? p["protocol"] : "TCP";
    if (typeof port !== "number")
      throw bad("Service", idText(id), `spec.ports[${i}].port`, "is not a number");
    if (proto !== "TCP" && proto !== "UDP" && proto !== "SCTP")
      throw bad(
        "Service",
        idText(id),
        `spec.ports[${i}].protocol`,
        `${JSON.stringify(proto)} is not TCP, UDP or SCTP`,
      );
    return { port, protocol: proto as "TCP" | "UDP" | "SCTP" };
  });
  const sel = spec["selector"];
  const labels = labelsOf("Service", o);
  const base = {
    name: id.name,
    namespace: id.namespace,
    ports,
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
  };
  if (isRecord(sel) && Object.keys(sel).length > 0) {
    const selector: Record<string, string> = {};
    for (const [k, v] of Object.entries(sel)) {
      if (typeof v !== "string") throw bad("Service", idText(id), `spec.selector.${k}`, "is not a string");
      selector[k] = v;
    }
    return { ...base, selector };
  }
  const ips = new Set<string>();
  for (const s of slices) for (const ip of s.ips) ips.add(ip);
  return { ...base, ips: [...ips].sort() };
}

/**
 * The policy document as `membrane apply` reads it: list items carry no
 * apiVersion/kind (the API server leaves them out), so the resource's are set.
 */
export function policyDocument(r: WatchedResource, o: KObject): string {
  return JSON.stringify({ ...o, apiVersion: apiVersionOf(r), kind: r.kind });
}
