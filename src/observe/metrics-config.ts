/**
 * Which Hubble metric handlers run, with their options, in the words a Hubble
 * user writes for `--hubble-metrics` (Cilium's `hubble.metrics.enabled`):
 *
 *   "dns:query;ignoreAAAA tcp flow:sourceContext=namespace;destinationContext=pod|ip"
 *   "httpV2:exemplars=true;labelsContext=source_namespace,source_workload,destination_namespace"
 *
 *   item    ::= handler [ ":" option { ";" option } ]     (items separated by blanks, or by commas
 *                                                          as cilium-agent's --hubble-metrics=dns,drop,tcp)
 *   option  ::= key [ "=" value ]                          (keys case-insensitive)
 *
 * Context options (every handler): sourceContext, destinationContext, their
 * Egress/Ingress variants (a list of identifiers joined by "|", the first
 * non-empty one wins) and labelsContext (a list of label names joined by ",").
 * Unlike Hubble, an unknown handler, option, identifier or label is an error
 * naming it (Hubble ignores an unknown option silently), and nothing is enabled.
 */
import { MembraneError } from "../errors.js";

/** The handlers we implement, by Hubble's names. */
export const METRIC_HANDLERS = [
  "flow",
  "drop",
  "policy",
  "port-distribution",
  "tcp",
  "icmp",
  "flows-to-world",
  "dns",
  "http",
  "httpV2",
  "kafka",
] as const;
export type MetricHandlerName = (typeof METRIC_HANDLERS)[number];

/** Options of one handler beside the context options (matched case-insensitively). */
const HANDLER_OPTIONS: Readonly<Record<MetricHandlerName, readonly string[]>> = {
  flow: [],
  drop: [],
  policy: [],
  "port-distribution": [],
  tcp: [],
  icmp: [],
  "flows-to-world": ["any-drop", "port", "syn-only"],
  dns: ["query", "ignoreAAAA"],
  http: ["exemplars"],
  httpV2: ["exemplars"],
  kafka: [],
};

/** Hubble's context identifiers (sourceContext=…, destinationContext=…). */
export const CONTEXT_IDENTIFIERS = [
  "identity",
  "namespace",
  "pod",
  "pod-short",
  "pod-name",
  "dns",
  "ip",
  "reserved-identity",
  "workload-name",
  "app",
] as const;
export type ContextIdentifier = (typeof CONTEXT_IDENTIFIERS)[number];

/** Hubble's labelsContext names, in the order the labels appear on a metric. */
export const CONTEXT_LABELS = [
  "source_ip",
  "source_pod",
  "source_namespace",
  "source_workload",
  "source_workload_kind",
  "source_app",
  "destination_ip",
  "destination_pod",
  "destination_namespace",
  "destination_workload",
  "destination_workload_kind",
  "destination_app",
  "traffic_direction",
] as const;
export type ContextLabel = (typeof CONTEXT_LABELS)[number];

export interface ContextConfig {
  readonly source?: readonly ContextIdentifier[];
  readonly sourceEgress?: readonly ContextIdentifier[];
  readonly sourceIngress?: readonly ContextIdentifier[];
  readonly destination?: readonly ContextIdentifier[];
  readonly destinationEgress?: readonly ContextIdentifier[];
  readonly destinationIngress?: readonly ContextIdentifier[];
  /** labelsContext, in CONTEXT_LABELS order. */
  readonly labels?: readonly ContextLabel[];
}

export interface MetricHandlerSpec {
  readonly name: MetricHandlerName;
  readonly context: ContextConfig;
  /** Handler options (lower-case key -> value, "" when given without a value). */
  readonly options: ReadonlyMap<string, string>;
}

type ContextKey = keyof Omit<ContextConfig, "labels">;
const CONTEXT_KEYS: Readonly<Record<string, ContextKey>> = {
  sourcecontext: "source",
  sourceegresscontext: "sourceEgress",
  sourceingresscontext: "sourceIngress",
  destinationcontext: "destination",
  destinationegresscontext: "destinationEgress",
  destinationingresscontext: "destinationIngress",
};

function invalid(where: string, message: string, hint: string): MembraneError {
  return new MembraneError("METRICS_CONFIG_INVALID", `Cannot enable Hubble metrics: ${where}: ${message}`, {
    location: { path: where },
    hint,
  });
}

function parseItem(item: string, where: string): MetricHandlerSpec {
  const colon = item.indexOf(":");
  const rawName = colon < 0 ? item : item.slice(0, colon);
  const name = METRIC_HANDLERS.find((h) => h === rawName);
  if (name === undefined)
    throw invalid(
      where,
      `unknown metric handler "${rawName}"`,
      `Handlers: ${METRIC_HANDLERS.join(", ")} (names are case-sensitive, as in Hubble).`,
    );
  const context: Partial<Record<ContextKey, ContextIdentifier[]>> & { labels?: ContextLabel[] } = {};
  const options = new Map<string, string>();
  const known = HANDLER_OPTIONS[name];
  for (const opt of colon < 0 ? [] : item.slice(colon + 1).split(";")) {
    if (opt === "") continue;
    const eq = opt.indexOf("=");
    const rawKey = eq < 0 ? opt : opt.slice(0, eq);
    const key = rawKey.toLowerCase();
    const value = eq < 0 ? "" : opt.slice(eq + 1);
    const ctxKey = CONTEXT_KEYS[key];
    if (ctxKey !== undefined) {
      context[ctxKey] = value.split("|").map((v) => {
        const id = CONTEXT_IDENTIFIERS.find((c) => c === v.toLowerCase());
        if (id === undefined)
          throw invalid(
            `${where} option ${rawKey}`,
            `unknown context "${v}"`,
            `Context identifiers: ${CONTEXT_IDENTIFIERS.join(", ")} (several joined by "|").`,
          );
        return id;
      });
    } else if (key === "labelscontext") {
      const wanted = value.split(",");
      for (const l of wanted)
        if (!(CONTEXT_LABELS as readonly string[]).includes(l))
          throw invalid(
            `${where} option labelsContext`,
            `invalid labelsContext value "${l}"`,
            `Labels: ${CONTEXT_LABELS.join(", ")} (several joined by ",").`,
          );
      context.labels = CONTEXT_LABELS.filter((l) => wanted.includes(l));
    } else if (known.some((k) => k.toLowerCase() === key)) {
      options.set(key, value);
    } else {
      const own = known.length > 0 ? `${known.join(", ")}, ` : "";
      throw invalid(
        where,
        `unknown option "${rawKey}" of ${name}`,
        `Options of ${name}: ${own}sourceContext, destinationContext, source/destination{Egress,Ingress}Context, labelsContext.`,
      );
    }
  }
  return { name, context, options };
}

/** Splits "dns,drop,flow:labelsContext=source_pod,source_namespace" at the commas before a handler name. */
function splitAtHandlers(s: string): string[] {
  const out: string[] = [];
  for (const part of s.split(",")) {
    const head = part.split(":")[0] ?? "";
    const last = out.length - 1;
    if (last >= 0 && !(METRIC_HANDLERS as readonly string[]).includes(head))
      out[last] = `${out[last] ?? ""},${part}`;
    else out.push(part);
  }
  return out;
}

/**
 * Parses `--hubble-metrics` values (each may hold several blank-separated
 * items). A handler named twice, or http beside httpV2 (both define
 * hubble_http_requests_total), is refused as Hubble refuses it.
 */
export function parseMetricsList(values: readonly string[]): MetricHandlerSpec[] {
  const items = values
    .flatMap((v) => v.split(/\s+/))
    .flatMap(splitAtHandlers)
    .filter((s) => s !== "");
  const out: MetricHandlerSpec[] = [];
  items.forEach((item, i) => {
    const spec = parseItem(item, `--hubble-metrics item ${i + 1} "${item}"`);
    if (out.some((s) => s.name === spec.name))
      throw invalid(
        `--hubble-metrics item ${i + 1} "${item}"`,
        `handler ${spec.name} is enabled twice`,
        "Name each handler once.",
      );
    const other = spec.name === "http" ? "httpV2" : spec.name === "httpV2" ? "http" : undefined;
    if (other !== undefined && out.some((s) => s.name === other))
      throw invalid(
        `--hubble-metrics item ${i + 1} "${item}"`,
        `handler ${spec.name} conflicts with ${other} (both define hubble_http_requests_total)`,
        "Enable one of http and httpV2.",
      );
    out.push(spec);
  });
  return out;
}

/** Every handler with no options, httpV2 for HTTP: what the agent counts without --hubble-metrics. */
export function defaultMetricsList(): MetricHandlerSpec[] {
  return METRIC_HANDLERS.filter((h) => h !== "http").map((name) => ({
    name,
    context: {},
    options: new Map(),
  }));
}
