/**
 * `membrane observe` flags -> the request the agent (or `--input FILE`) evaluates.
 *
 *   {pod: ["default/x"], port: ["80"], verdict: ["DROPPED"], last: 20}
 *     --filterFromFlags--> {filter: {allowlist: [{source_pod, source_port, verdict},
 *                                                {destination_pod, destination_port, verdict}]},
 *                           number: 20, follow: false}
 *
 * As hubble's CLI: a flag about "either side" (--pod, --namespace, --label,
 * --identity, --ip, --port) fills the source field of a left filter and the
 * destination field of a right one; --from-X / --to-X and side-less flags
 * (--verdict, --type, --protocol, --http-*) go into both. The two filters are
 * ORed (one, when they come out equal). A pod without a namespace is
 * qualified by --namespace when given, and matches any namespace otherwise.
 */
import { MembraneError } from "../errors.js";
import { EVENT_TYPE, VERDICTS, type Verdict } from "./flow.js";
import type { EventTypeFilter, FlowFilter, FlowFilterSet } from "./filter.js";
import { compileFilter } from "./filter.js";

type Many = string | number | readonly (string | number)[] | undefined;

/** The flags as commander hands them over (camelCase; repeatable flags as arrays). */
export interface ObserveFlags {
  follow?: boolean;
  last?: string | number;
  since?: string;
  until?: string;
  namespace?: Many;
  pod?: Many;
  fromPod?: Many;
  toPod?: Many;
  service?: Many;
  fromService?: Many;
  toService?: Many;
  label?: Many;
  fromLabel?: Many;
  toLabel?: Many;
  identity?: Many;
  fromIdentity?: Many;
  toIdentity?: Many;
  ip?: Many;
  fromIp?: Many;
  toIp?: Many;
  port?: Many;
  fromPort?: Many;
  toPort?: Many;
  verdict?: Many;
  type?: Many;
  protocol?: Many;
  httpStatus?: Many;
  httpMethod?: Many;
  httpPath?: Many;
  trafficDirection?: Many;
  nodeName?: Many;
}

/** Hubble's GetFlowsRequest, in our words. Times are ms since the epoch. */
export interface ObserveRequest {
  filter: FlowFilterSet;
  /** --last N: the N most recent matching flows. */
  number?: number;
  since?: number;
  until?: number;
  follow: boolean;
}

export const EVENT_TYPE_NAMES: Readonly<Record<string, EventTypeFilter>> = {
  "policy-verdict": { type: EVENT_TYPE.policyVerdict },
  drop: { type: EVENT_TYPE.drop },
  trace: { type: EVENT_TYPE.trace },
  l7: { type: EVENT_TYPE.l7 },
};

function usage(flag: string, why: string, hint: string): MembraneError {
  return new MembraneError("FLOW_FILTER_INVALID", `Cannot use --${flag}: ${why}`, {
    location: { path: `--${flag}` },
    hint,
  });
}

const list = (v: Many): string[] =>
  v === undefined
    ? []
    : (Array.isArray(v) ? v : [v])
        .flatMap((x) => String(x).split(","))
        .map((x) => x.trim())
        .filter((x) => x !== "");

const DURATION_RE = /^(\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** RFC 3339 time, or a duration before `now` ("90s", "5m", "1h30m"). */
export function parseTimeFlag(flag: string, v: string, now: number): number {
  if (DURATION_RE.test(v)) {
    let ms = 0;
    for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g))
      ms += Number(m[1]) * (UNIT_MS[m[2] as string] ?? 0);
    return now - ms;
  }
  const t = /^\d{4}-\d\d-\d\dT/.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(t))
    throw usage(
      flag,
      `"${v}" is neither an RFC 3339 time nor a duration`,
      'Write "2024-05-01T10:00:00Z" or "5m", "1h30m".',
    );
  return t;
}

function identities(flag: string, v: Many): number[] {
  return list(v).map((s) => {
    if (!/^\d{1,10}$/.test(s))
      throw usage(
        flag,
        `"${s}" is not a numeric identity`,
        "Give identities as numbers (see `membrane get identities`).",
      );
    return Number(s);
  });
}

/** Turns observe flags into the request; throws FLOW_FILTER_INVALID naming the flag. */
export function filterFromFlags(flags: ObserveFlags, now: number = Date.now()): ObserveRequest {
  const left: FlowFilter = {};
  const right: FlowFilter = {};
  let used = false;
  const add = <K extends keyof FlowFilter>(f: FlowFilter, k: K, vals: NonNullable<FlowFilter[K]>): void => {
    if (vals.length === 0) return;
    used = true;
    f[k] = [...((f[k] ?? []) as unknown[]), ...(vals as unknown[])] as FlowFilter[K];
  };
  const both = <K extends keyof FlowFilter>(k: K, vals: NonNullable<FlowFilter[K]>): void => {
    add(left, k, vals);
    add(right, k, vals);
  };
  const either = <S extends keyof FlowFilter, D extends keyof FlowFilter>(
    s: S,
    d: D,
    vals: NonNullable<FlowFilter[S]> & NonNullable<FlowFilter[D]>,
  ): void => {
    add(left, s, vals);
    add(right, d, vals);
  };

  const namespaces = list(flags.namespace);
  const qualify = (pods: string[]): string[] =>
    pods.flatMap((p) =>
      p.includes("/") || namespaces.length === 0 ? [p] : namespaces.map((n) => `${n}/${p}`),
    );
  const pods = qualify(list(flags.pod));
  const fromPods = qualify(list(flags.fromPod));
  const toPods = qualify(list(flags.toPod));
  if (pods.length + fromPods.length + toPods.length === 0)
    either(
      "source_pod",
      "destination_pod",
      namespaces.map((n) => `${n}/`),
    );
  either("source_pod", "destination_pod", pods);
  both("source_pod", fromPods);
  both("destination_pod", toPods);
  either("source_service", "destination_service", qualify(list(flags.service)));
  both("source_service", qualify(list(flags.fromService)));
  both("destination_service", qualify(list(flags.toService)));

  either("source_label", "destination_label", list(flags.label));
  both("source_label", list(flags.fromLabel));
  both("destination_label", list(flags.toLabel));
  either("source_identity", "destination_identity", identities("identity", flags.identity));
  both("source_identity", identities("from-identity", flags.fromIdentity));
  both("destination_identity", identities("to-identity", flags.toIdentity));
  either("source_ip", "destination_ip", list(flags.ip));
  both("source_ip", list(flags.fromIp));
  both("destination_ip", list(flags.toIp));
  either("source_port", "destination_port", list(flags.port));
  both("source_port", list(flags.fromPort));
  both("destination_port", list(flags.toPort));

  const verdicts = list(flags.verdict).map((v) => v.toUpperCase());
  for (const v of verdicts)
    if (!VERDICTS.includes(v as Verdict))
      throw usage("verdict", `"${v}" is not a verdict`, `Use one of ${VERDICTS.join(", ")}.`);
  both("verdict", verdicts as Verdict[]);
  both(
    "event_type",
    list(flags.type).map((t) => {
      const e = EVENT_TYPE_NAMES[t.toLowerCase()];
      if (e === undefined)
        throw usage(
          "type",
          `"${t}" is not an event type`,
          `Use one of ${Object.keys(EVENT_TYPE_NAMES).join(", ")}.`,
        );
      return e;
    }),
  );
  both("protocol", list(flags.protocol));
  both("http_status_code", list(flags.httpStatus));
  both("http_method", list(flags.httpMethod));
  both("http_path", list(flags.httpPath));
  const dirs = list(flags.trafficDirection).map((d) => d.toUpperCase());
  for (const d of dirs)
    if (d !== "INGRESS" && d !== "EGRESS")
      throw usage("traffic-direction", `"${d}" is not ingress or egress`, "Use ingress or egress.");
  both("traffic_direction", dirs as ("INGRESS" | "EGRESS")[]);
  both("node_name", list(flags.nodeName));

  const filter: FlowFilterSet = !used
    ? {}
    : { allowlist: JSON.stringify(left) === JSON.stringify(right) ? [left] : [left, right] };
  try {
    compileFilter(filter); // validates every value now, with the field path
  } catch (e) {
    if (e instanceof MembraneError)
      throw new MembraneError(
        "FLOW_FILTER_INVALID",
        e.message.replace(/^Cannot use flow filter (allow|deny)list\[\d\]\./, "Cannot use filter "),
        { ...(e.hint === undefined ? {} : { hint: e.hint }), cause: e },
      );
    throw e;
  }

  const req: ObserveRequest = { filter, follow: flags.follow === true };
  if (flags.last !== undefined) {
    const n = String(flags.last);
    if (!/^\d+$/.test(n) || Number(n) < 1)
      throw usage("last", `"${n}" is not a positive count`, "Give a number such as --last 20.");
    req.number = Number(n);
  }
  if (flags.since !== undefined) req.since = parseTimeFlag("since", flags.since, now);
  if (flags.until !== undefined) req.until = parseTimeFlag("until", flags.until, now);
  if (req.since !== undefined && req.until !== undefined && req.since > req.until)
    throw usage("since", "it is later than --until", "Swap the two times.");
  return req;
}
