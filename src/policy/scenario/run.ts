/**
 * Runs a scenario's queries in order against a fresh engine and compares
 * the verdicts with the expected ones.
 */
import { isMembraneError } from "../../errors.js";
import type { TraceResult } from "../engine.js";
import type { Decision, DirectionDecision } from "../query.js";
import { policyRefString, type PolicyResource, type RuleOrigin } from "../types.js";
import { parseScenario } from "./load.js";
import { type EngineFactory, ScenarioSession } from "./session.js";
import type {
  QueryResult,
  QuerySpec,
  Scenario,
  ScenarioError,
  ScenarioQuery,
  ScenarioResult,
  ScenarioWorld,
} from "./types.js";

export interface RunOptions {
  readonly engineFactory?: EngineFactory;
}

/** Runs every query of a loaded scenario. Throws MembraneError when a query cannot be run. */
export function runScenario(s: Scenario, opts: RunOptions = {}): ScenarioResult {
  const session = new ScenarioSession({
    world: s,
    ...(opts.engineFactory ? { engineFactory: opts.engineFactory } : {}),
  });
  const results = s.queries.map((q) => {
    const flow = session.prepare(q, {
      file: s.file,
      prefix: `queries[${q.index}].`,
      ...(q.line ? { line: q.line } : {}),
    });
    return compare(q, session.engine.decide(flow));
  });
  return { file: s.file, name: s.name, ...(s.warnings ? { warnings: s.warnings } : {}), results };
}

/**
 * Loads and runs a scenario file's text; every failure becomes the result's
 * `error` instead of an exception, so the other files of a run still run.
 */
export function runScenarioText(
  text: string,
  file: string,
  opts: RunOptions & { filter?: (name: string) => boolean } = {},
): ScenarioResult | undefined {
  let name: string | undefined;
  try {
    const s = parseScenario(text, file);
    name = s.name;
    if (opts.filter && !opts.filter(s.name)) return undefined;
    return runScenario(s, opts);
  } catch (e) {
    return { file, ...(name !== undefined ? { name } : {}), results: [], error: toScenarioError(e) };
  }
}

/** Traces one query against a world (a scenario file) plus extra policies. */
export function traceQuery(
  world: ScenarioWorld,
  q: QuerySpec,
  opts: RunOptions & { extraPolicies?: readonly PolicyResource[] } = {},
): TraceResult {
  const session = new ScenarioSession({
    world,
    ...(opts.extraPolicies ? { extraPolicies: opts.extraPolicies } : {}),
    ...(opts.engineFactory ? { engineFactory: opts.engineFactory } : {}),
  });
  return session.engine.trace(session.prepare(q, { prefix: "--" }));
}

export function compare(q: ScenarioQuery, d: Decision): QueryResult {
  const pass = q.expect === d.verdict && (q.expect === "allow" || q.how === undefined || q.how === d.how);
  const l7 = l7Summary(q);
  return {
    index: q.index,
    ...(q.line !== undefined ? { line: q.line } : {}),
    from: q.from,
    to: q.to,
    proto: q.proto,
    ...(q.port !== undefined ? { port: q.port } : {}),
    ...(q.icmpType !== undefined ? { icmpType: q.icmpType } : {}),
    ...(l7 !== undefined ? { l7 } : {}),
    expect: q.expect,
    ...(q.how !== undefined ? { expectHow: q.how } : {}),
    actual: d.verdict,
    ...(d.verdict === "deny" && d.how !== undefined ? { actualHow: d.how } : {}),
    pass,
    decidedBy: explainDecision(d),
    ...(q.note !== undefined ? { note: q.note } : {}),
  };
}

/** A one-line summary of a query's L7 request, e.g. `GET /v1/x`. */
export function l7Summary(q: QuerySpec): string | undefined {
  const parts: string[] = [];
  if (q.tls) parts.push(`sni ${q.tls.sni}`);
  if (q.http) parts.push(`${q.http.method} ${q.http.path}`);
  if (q.dnsQuery !== undefined) parts.push(`dns ${q.dnsQuery}`);
  if (q.kafka)
    parts.push(`kafka ${q.kafka.apiKey}${q.kafka.topic !== undefined ? ` topic=${q.kafka.topic}` : ""}`);
  return parts.length > 0 ? parts.join(" ") : undefined;
}

/** The rules that decided, per direction: `ingress: default/rule1 spec.ingress[0]`. */
export function explainDecision(d: Decision): string[] {
  if (d.verdict === "deny") {
    const denied = d.egress.verdict === "deny" ? d.egress : d.ingress;
    return [describeDirection(denied)];
  }
  // A side speaks when its policy enforces, audits, or a rule matched: a host
  // policy (no endpoint) and a DNS rule of a policy without default deny name their rule too.
  const out = [d.egress, d.ingress]
    .filter((x) => x.enforced || x.audit !== undefined || x.decidedBy.length > 0)
    .map(describeDirection);
  return out.length > 0 ? out : ["no policy enforced on either side"];
}

function origins(list: readonly RuleOrigin[]): string {
  return list.map((o) => `${policyRefString(o.policy)} ${o.path}`).join(", ");
}

function describeDirection(x: DirectionDecision): string {
  // Only endpoints and the host have policies: a side without an endpoint is the host's.
  const dir = x.endpoint === undefined ? `${x.direction} (host policy)` : x.direction;
  if (x.audit) {
    return x.audit.reason === "default-deny"
      ? `${dir}: AUDIT (would be default deny; audit mode)`
      : `${dir}: AUDIT (would be denied by ${origins(x.audit.decidedBy)}; audit mode)`;
  }
  const rules = origins(x.decidedBy);
  if (!x.enforced && x.verdict === "allow") {
    if (rules === "") return `${dir}: not enforced`;
    const l7 = x.l7 ? `${x.l7.parser} ${x.l7.verdict}; ` : "";
    return `${dir}: ${rules} (${l7}no default deny in this direction)`;
  }
  if (x.verdict === "deny") {
    switch (x.reason) {
      case "policy-denied":
        return `${dir}: deny rule ${rules || "(unnamed)"}`;
      case "auth-required":
        return `${dir}: authentication required by ${rules || "(unnamed)"}`;
      case "l7-denied":
        return `${dir}: ${x.l7?.parser ?? "L7"} rules of ${rules || "(unnamed)"} refused the request`;
      default:
        return `${dir}: default deny (no rule allows)`;
    }
  }
  const acts = x.l7?.headerActions?.length ? `; header mismatch: ${x.l7.headerActions.join("; ")}` : "";
  const l7 = x.l7 ? ` (${x.l7.parser} ${x.l7.verdict}${acts})` : "";
  return rules ? `${dir}: ${rules}${l7}` : `${dir}: allowed without a rule (localhost or reserved)${l7}`;
}

export function toScenarioError(e: unknown): ScenarioError {
  if (isMembraneError(e)) {
    return {
      code: e.code,
      message: e.message,
      issues: e.issues.map((i) => ({ ...i })),
      ...(e.hint !== undefined ? { hint: e.hint } : {}),
    };
  }
  const err = e instanceof Error ? e : new Error(String(e));
  return {
    code: "INTERNAL",
    message: `Cannot run scenario: internal error: ${err.message}`,
    issues: [],
    ...(err.stack !== undefined ? { stack: err.stack } : {}),
  };
}
