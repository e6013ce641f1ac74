/**
 * `membrane policy test --datapath`: the same scenario files built for real.
 *
 *   scenario --offline engine (ScenarioSession)--> Decision per query
 *            --planQuery / planDnsFeeds--> skip (reason) | QueryPlan, DNS answers to feed
 *            --ScratchNode (agent + L7 proxy in-process, netns per endpoint / outside address)-->
 *              answers fed, then the probe's request: "ok" / "200" = allow,
 *              "timeout" = deny (drop), "403" / "denied" / "reset" / REFUSED = deny by the proxy
 *              --compare with expect (datapath-verdict.ts)-->
 *   DatapathScenarioResult (pass | fail | skip per query)
 *
 * Queries the node cannot answer faithfully (mutual authentication, SCTP,
 * ...) are SKIPPED with a reason, never passed. Every scratch node is torn
 * down in `finally`, and on SIGINT/SIGTERM while a run is in progress.
 */
import { randomBytes } from "node:crypto";
import { parse as parseYaml } from "yaml";
import { selfSignedCert } from "../probe/tls-cert.js";
import type { Decision, DenyHow, FlowQuery } from "../policy/query.js";
import { nodeLabelsOf, ScenarioSession } from "../policy/scenario/session.js";
import { compare, toScenarioError } from "../policy/scenario/run.js";
import { parseScenario } from "../policy/scenario/load.js";
import {
  learnDns,
  nodeCidrs,
  outsideProblem,
  planQuery,
  scenarioSkipReason,
  type PlanContext,
  type QueryPlan,
} from "./datapath-plan.js";
import { assignListeners, hostChecked } from "./datapath-plan-l7.js";
import { type DnsFeed, feedText, planDnsFeeds, resolverCandidates } from "./datapath-dns-feed.js";
import { ScratchNode, type Observation, type QueryPath } from "./datapath-node.js";
import { ScratchCluster, nodeName } from "./datapath-cluster.js";
import { placeEndpoints, type Placement } from "./datapath-placement.js";
import { feedDns, nodeTarget } from "./datapath-traffic.js";
import { harnessFailure, observedResult, skipped } from "./datapath-verdict.js";
import { parsePeer } from "../policy/scenario/peer.js";
import type { QueryResult, Scenario, ScenarioError, ScenarioWorld } from "../policy/scenario/types.js";

export { observedResult } from "./datapath-verdict.js";

export type DatapathOutcome = "pass" | "fail" | "skip";

export interface DatapathQueryResult extends Omit<QueryResult, "actual" | "actualHow" | "pass"> {
  readonly outcome: DatapathOutcome;
  /** What the kernel did; absent when skipped. */
  readonly actual?: "allow" | "deny";
  readonly actualHow?: DenyHow;
  /** The probe's raw result: ok, timeout, an L7 answer (200, 403, denied, reset, NOERROR ...) or an errno. */
  readonly observed?: string;
  /** NFLOG prefix of the kernel's drop log for a denied connection (`mbr:d:e3:in:def`). */
  readonly dropLog?: string;
  readonly skipReason?: string;
  /** The offline engine's verdict for the same query. */
  readonly offline: { readonly verdict: "allow" | "deny"; readonly how?: DenyHow };
  /** With --nodes N >= 2: the nodes of the two sides (and the underlay packets across nodes). */
  readonly path?: QueryPath;
}

export interface DatapathScenarioResult {
  readonly file: string;
  readonly name?: string;
  readonly results: readonly DatapathQueryResult[];
  /** Warnings of the policy parser about the scenario's policies. */
  readonly warnings?: ScenarioWorld["warnings"];
  /** Set when the file is invalid or the node could not be built; counts as one failure. */
  readonly error?: ScenarioError;
  readonly ms?: number;
  /** With --nodes N >= 2: node name -> the endpoints (`namespace/name`) it ran, and its pod CIDRs. */
  readonly nodes?: readonly {
    readonly node: string;
    readonly endpoints: readonly string[];
    readonly podCidrs: readonly string[];
  }[];
}

export interface DatapathOptions {
  /** Connect / answer timeout per query in ms (default 400). */
  readonly timeoutMs?: number;
  /** Namespace name prefix; default `mbp<4 random><index>-`. */
  readonly prefix?: string;
  readonly filter?: (name: string) => boolean;
  /**
   * Nodes to spread the endpoints over (default 1: one scratch node). With
   * 2 or more: a scratch cluster on etcd (datapath-cluster.ts), endpoints placed
   * by datapath-placement.ts.
   */
  readonly nodes?: number;
}

/** A run-wide random stem; scenario i uses `<stem><i>-`. */
export function datapathPrefixStem(): string {
  return "mbp" + randomBytes(3).readUIntBE(0, 3).toString(36).slice(0, 4).padStart(4, "0");
}

/** Loads and runs a scenario file on a scratch node; failures become the result's `error`. */
export async function runDatapathText(
  text: string,
  file: string,
  opts: DatapathOptions = {},
): Promise<DatapathScenarioResult | undefined> {
  let name: string | undefined;
  const t0 = performance.now();
  try {
    const s = parseScenario(text, file);
    name = s.name;
    if (opts.filter && !opts.filter(s.name)) return undefined;
    const placement = (opts.nodes ?? 1) > 1 ? placeEndpoints(s, opts.nodes ?? 1) : undefined;
    const results = await runDatapathScenario(s, policiesText(text), opts, placement);
    const warnings = s.warnings ? { warnings: s.warnings } : {};
    const nodes = placement && !("skip" in placement) ? { nodes: placementView(s, placement) } : {};
    return { file, name, ...warnings, ...nodes, results, ms: Math.round(performance.now() - t0) };
  } catch (e) {
    return { file, ...(name !== undefined ? { name } : {}), results: [], error: toScenarioError(e) };
  }
}

/** The raw `policies` block of a scenario file (the agent parses it itself, as `membrane apply` would). */
function policiesText(text: string): string {
  const doc = parseYaml(text) as { policies?: unknown } | null;
  return typeof doc?.policies === "string" ? doc.policies : "";
}

interface Prepared {
  readonly offline: QueryResult;
  readonly plan: QueryPlan | { skip: string };
  /** remote-node / kube-apiserver addresses this query makes known (offline does it in prepare). */
  readonly nodeAddrs: readonly {
    ip: string;
    kind: "remote-node" | "kube-apiserver";
    labels: [Readonly<Record<string, string>>] | [];
  }[];
  /** The query's `dns` answers, given to the agent before it runs (offline: in prepare). */
  readonly feeds: readonly DnsFeed[];
}

/** How the queries reach the kernel: one scratch node, or a scratch cluster. */
interface Runner {
  nodeAddress(
    ip: string,
    kind: "remote-node" | "kube-apiserver",
    labels?: Readonly<Record<string, string>>,
  ): Promise<void>;
  feed(f: DnsFeed): Promise<string | undefined>;
  send(plan: QueryPlan, timeoutMs: number): Promise<Observation>;
}

/**
 * Runs one loaded scenario (on the nodes of `placement` when given: see
 * DatapathOptions.nodes). Throws when the scenario cannot be prepared or its node built.
 */
export async function runDatapathScenario(
  s: Scenario,
  policies: string,
  opts: DatapathOptions = {},
  placement: Placement | { skip: string } | undefined = (opts.nodes ?? 1) > 1
    ? placeEndpoints(s, opts.nodes ?? 1)
    : undefined,
): Promise<DatapathQueryResult[]> {
  const placed = placement && !("skip" in placement) ? placement : undefined;
  const prepared = await prepare(s, placed);
  if (placement && "skip" in placement) return prepared.map((p) => skipped(p.offline, placement.skip));
  // DNS answers alone change nothing observable: no node when every query skips.
  if (prepared.every((p) => "skip" in p.plan))
    return prepared.map((p) => skipped(p.offline, (p.plan as { skip: string }).skip));

  const ctx = planContext(s, placed);
  const prefix = opts.prefix ?? `${datapathPrefixStem()}0-`;
  const built = await build(
    placed
      ? new ScratchCluster({ prefix, scenario: s, policiesText: policies, placement: placed })
      : new ScratchNode({ prefix, scenario: s, policiesText: policies, cidrs: ctx.cidrs }),
  );
  const run: Runner =
    built instanceof ScratchCluster
      ? {
          nodeAddress: async (ip, kind, labels) => {
            for (const n of built.nodes) await n.nodeAddress(ip, kind, labels);
          },
          feed: (f) => feedDns(built, f),
          send: (plan, t) => built.send(plan, t),
        }
      : {
          nodeAddress: (ip, kind, labels) => built.nodeAddress(ip, kind, labels),
          feed: (f) => feedDns(nodeTarget(built), f),
          send: (plan, t) => built.send(plan, t),
        };
  const timeoutMs = opts.timeoutMs ?? 400;
  try {
    const out: DatapathQueryResult[] = [];
    for (const p of prepared) {
      for (const a of p.nodeAddrs)
        if (outsideProblem(a.ip, ctx) === undefined) await run.nodeAddress(a.ip, a.kind, ...a.labels);
      const notes = p.feeds.map(feedText);
      let failed: string | undefined;
      for (const f of p.feeds) failed ??= await run.feed(f);
      if (failed !== undefined) out.push(harnessFailure(p.offline, `DNS answer not fed: ${failed}`, notes));
      else if ("skip" in p.plan) out.push(skipped(p.offline, p.plan.skip));
      else {
        const seen = await run.send(p.plan, timeoutMs);
        out.push(withPath(observedResult(p.offline, seen, timeoutMs, p.plan, notes), seen.path));
      }
    }
    return out;
  } finally {
    await destroyBuilt(built);
  }
}

/** A result with the nodes its traffic ran on, also as the last line of decidedBy. */
function withPath(r: DatapathQueryResult, path: QueryPath | undefined): DatapathQueryResult {
  if (!path) return r;
  const via =
    path.underlayPackets === undefined
      ? `nodes: ${path.from} (both sides)`
      : `nodes: ${path.from} -> ${path.to} (${path.underlayPackets} packets onto the underlay)`;
  return { ...r, path, decidedBy: [...r.decidedBy, via] };
}

/** The plan context: one node's CIDRs, or (several nodes) the first node's and every node's. */
function planContext(s: Scenario, placement: Placement | undefined): PlanContext {
  if (!placement) return { scenario: s, cidrs: nodeCidrs(s) };
  const first = placement.nodes[0] ?? nodeCidrs(s);
  return {
    scenario: s,
    cidrs: first,
    nodes: { cidrs: placement.nodes, nodeOf: (k) => placement.nodeOf.get(k) ?? 0 },
  };
}

/** The scenario's nodes for the output: name, endpoints (file order), pod CIDRs. */
function placementView(s: Scenario, p: Placement): NonNullable<DatapathScenarioResult["nodes"]> {
  return p.nodes.map((c, i) => ({
    node: nodeName(i),
    endpoints: s.endpoints.map((e) => `${e.namespace}/${e.name}`).filter((k) => p.nodeOf.get(k) === i),
    podCidrs: [c.podCidr4, ...(c.podCidr6 !== undefined ? [c.podCidr6] : [])],
  }));
}

/** Offline decisions, plans and DNS feeds of every query, in order (the session's state moves on). */
async function prepare(s: Scenario, placement?: Placement): Promise<Prepared[]> {
  const dnsNames = new Map<string, string[]>();
  const ctx: PlanContext = { ...planContext(s, placement), dnsNames };
  const session = new ScenarioSession({ world: s });
  // Several nodes: ctx.cidrs is the first node's (the placement checked every node's reserved addresses).
  const scenarioSkip = scenarioSkipReason(s, ctx.cidrs);
  const candidates = resolverCandidates(ctx);
  const decide = (f: FlowQuery): Decision => session.engine.decide(f);
  const out = s.queries.map((q) => {
    const flow = session.prepare(q, {
      file: s.file,
      prefix: `queries[${q.index}].`,
      ...(q.line ? { line: q.line } : {}),
    });
    const feeds =
      scenarioSkip === undefined ? planDnsFeeds(session.dnsChange(), ctx, decide, candidates) : [];
    learnDns(dnsNames, q);
    const d = decide(flow);
    const nodeAddrs = [q.from, q.to].flatMap((t) => {
      const p = parsePeer(t);
      return !("error" in p) && (p.kind === "remote-node" || p.kind === "kube-apiserver")
        ? [{ ip: p.ip, kind: p.kind, labels: nodeLabelsOf(s, p) }]
        : [];
    });
    const plan = scenarioSkip !== undefined ? { skip: scenarioSkip } : planQuery(q, d, ctx);
    return { offline: compare(q, d), plan: hostChecked(q, plan, flow, d, decide), nodeAddrs, feeds };
  });
  const plans = assignListeners(
    out.map((p) => p.plan),
    out.flatMap((p) => p.feeds.flatMap((f) => (f.via ? [f.via.to] : []))),
  );
  const tlsProblem = plans.some((p) => !("skip" in p) && p.kind === "tls") ? await certProblem() : undefined;
  return out.map((p, i) => {
    const plan = plans[i] ?? p.plan;
    return {
      ...p,
      plan:
        tlsProblem !== undefined && !("skip" in plan) && plan.kind === "tls" ? { skip: tlsProblem } : plan,
    };
  });
}

async function certProblem(): Promise<string | undefined> {
  try {
    await selfSignedCert();
    return undefined;
  } catch (e) {
    return `cannot make the TLS server's certificate: ${e instanceof Error ? e.message : String(e)}`;
  }
}

// ---- teardown on signals -----------------------------------------------------

type Built = ScratchNode | ScratchCluster;
const live = new Set<Built>();
let onSignal: ((sig: NodeJS.Signals) => void) | undefined;
/** Set by SIGINT/SIGTERM: no new scratch node is built while the live ones are torn down. */
let interrupted = false;

async function build<T extends Built>(n: T): Promise<T> {
  if (!onSignal) {
    onSignal = (sig) => {
      interrupted = true;
      void Promise.all([...live].map((x) => x.destroy())).finally(() =>
        process.exit(sig === "SIGINT" ? 130 : 143),
      );
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  }
  if (interrupted) throw new Error("interrupted");
  // Known before it is built, so that a signal during the build removes what exists so far.
  live.add(n);
  try {
    await n.start();
  } catch (e) {
    await destroyBuilt(n);
    throw e;
  }
  return n;
}

async function destroyBuilt(n: Built): Promise<void> {
  await n.destroy();
  live.delete(n);
  if (live.size === 0 && onSignal) {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    onSignal = undefined;
  }
}

/** Counts for the summary line: an unloadable or unbuildable file counts as one failure. */
export function countDatapath(all: readonly DatapathScenarioResult[]): {
  passed: number;
  failed: number;
  skipped: number;
} {
  let passed = 0;
  let failed = 0;
  let skippedN = 0;
  for (const s of all) {
    if (s.error) failed++;
    for (const r of s.results) {
      if (r.outcome === "pass") passed++;
      else if (r.outcome === "fail") failed++;
      else skippedN++;
    }
  }
  return { passed, failed, skipped: skippedN };
}
