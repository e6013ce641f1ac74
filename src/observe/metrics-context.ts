/**
 * Hubble's context labels on a metric: what a handler appends for its
 * sourceContext / destinationContext / labelsContext options.
 *
 *   ContextConfig --new MetricContext--> names(): [labelsContext..., "source"?, "destination"?]
 *   Flow ---------values(flow, invert)--> the same count of strings
 *
 * Values as Hubble's: `pod` is "namespace/pod", `pod-short` drops the
 * ReplicaSet/Pod hash suffixes, `identity` joins the labels with ",", `app` is
 * the first of app.kubernetes.io/name, k8s-app, app; an empty value lets the
 * next identifier of a "|" list try. `invert` swaps the sides, for metrics
 * counted from RESPONSE records (which go from the server to the client).
 */
import type { ContextConfig, ContextIdentifier, ContextLabel } from "./metrics-config.js";
import type { Endpoint, Flow } from "./flow.js";

const NONE: readonly string[] = Object.freeze([]);
const SHORT_POD = /^(.+?)(-[a-z0-9]+){1,2}$/;
const APP_LABELS = ["k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app="];
const KUBE_APISERVER = "reserved:kube-apiserver";

function app(labels: readonly string[] | undefined): string {
  for (const l of labels ?? [])
    for (const prefix of APP_LABELS)
      if (l.startsWith(prefix) && l.length > prefix.length) return l.slice(prefix.length);
  return "";
}

function reservedIdentity(labels: readonly string[] | undefined): string {
  if (labels === undefined) return "";
  if (labels.includes(KUBE_APISERVER)) return KUBE_APISERVER;
  return labels.find((l) => l.startsWith("reserved:")) ?? "";
}

function withNamespace(ep: Endpoint | undefined, name: string): string {
  return ep?.namespace ? `${ep.namespace}/${name}` : name;
}

function identifierValue(id: ContextIdentifier, f: Flow, source: boolean): string {
  const ep = source ? f.source : f.destination;
  switch (id) {
    case "namespace":
      return ep?.namespace ?? "";
    case "identity":
      return (ep?.labels ?? []).join(",");
    case "pod":
      return withNamespace(ep, ep?.pod_name ?? "");
    case "pod-short":
      return withNamespace(ep, (ep?.pod_name ?? "").replace(SHORT_POD, "$1"));
    case "pod-name":
      return ep?.pod_name ?? "";
    case "dns":
      return ((source ? f.source_names : f.destination_names) ?? []).join(",");
    case "ip":
      return (source ? f.IP?.source : f.IP?.destination) ?? "";
    case "reserved-identity":
      return reservedIdentity(ep?.labels);
    case "workload-name":
      return ep?.workloads?.[0]?.name ?? "";
    case "app":
      return app(ep?.labels);
  }
}

function labelValue(label: ContextLabel, f: Flow, invert: boolean): string {
  const src = invert ? f.destination : f.source;
  const dst = invert ? f.source : f.destination;
  const srcIp = invert ? f.IP?.destination : f.IP?.source;
  const dstIp = invert ? f.IP?.source : f.IP?.destination;
  switch (label) {
    case "source_ip":
      return srcIp ?? "";
    case "source_pod":
      return src?.pod_name ?? "";
    case "source_namespace":
      return src?.namespace ?? "";
    case "source_workload":
      return src?.workloads?.[0]?.name ?? "";
    case "source_workload_kind":
      return src?.workloads?.[0]?.kind ?? "";
    case "source_app":
      return app(src?.labels);
    case "destination_ip":
      return dstIp ?? "";
    case "destination_pod":
      return dst?.pod_name ?? "";
    case "destination_namespace":
      return dst?.namespace ?? "";
    case "destination_workload":
      return dst?.workloads?.[0]?.name ?? "";
    case "destination_workload_kind":
      return dst?.workloads?.[0]?.kind ?? "";
    case "destination_app":
      return app(dst?.labels);
    case "traffic_direction":
      return f.traffic_direction === "TRAFFIC_DIRECTION_UNKNOWN"
        ? "unknown"
        : f.traffic_direction.toLowerCase();
  }
}

function firstNonEmpty(ids: readonly ContextIdentifier[], f: Flow, source: boolean): string {
  for (const id of ids) {
    const v = identifierValue(id, f, source);
    if (v !== "") return v;
  }
  return "";
}

export class MetricContext {
  private readonly labels: readonly ContextLabel[];
  private readonly hasSource: boolean;
  private readonly hasDestination: boolean;
  /** True when no context option is set (values() is then always []). */
  readonly empty: boolean;

  constructor(private readonly c: ContextConfig) {
    this.labels = c.labels ?? [];
    this.hasSource = [c.source, c.sourceEgress, c.sourceIngress].some((l) => l !== undefined);
    this.hasDestination = [c.destination, c.destinationEgress, c.destinationIngress].some(
      (l) => l !== undefined,
    );
    this.empty = this.labels.length === 0 && !this.hasSource && !this.hasDestination;
  }

  /** Label names this context adds, in the order values() returns them. */
  names(): string[] {
    return [
      ...this.labels,
      ...(this.hasSource ? ["source"] : []),
      ...(this.hasDestination ? ["destination"] : []),
    ];
  }

  values(f: Flow, invert = false): readonly string[] {
    if (this.empty) return NONE;
    const out = this.labels.map((l) => labelValue(l, f, invert));
    const dir = f.traffic_direction;
    const pick = (
      all: readonly ContextIdentifier[] | undefined,
      egress: readonly ContextIdentifier[] | undefined,
      ingress: readonly ContextIdentifier[] | undefined,
    ): readonly ContextIdentifier[] =>
      (dir === "INGRESS" ? ingress : dir === "EGRESS" ? egress : undefined) ?? all ?? [];
    let source = this.hasSource
      ? firstNonEmpty(pick(this.c.source, this.c.sourceEgress, this.c.sourceIngress), f, true)
      : "";
    let destination = this.hasDestination
      ? firstNonEmpty(pick(this.c.destination, this.c.destinationEgress, this.c.destinationIngress), f, false)
      : "";
    if (invert) [source, destination] = [destination, source];
    if (this.hasSource) out.push(source);
    if (this.hasDestination) out.push(destination);
    return out;
  }
}
