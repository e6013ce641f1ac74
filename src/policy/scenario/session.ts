/**
 * A PolicyEngine loaded with one scenario's world, and the translation of
 * scenario queries (`from: tiefighter`, `to: fqdn:api.x.com`, `dns: [...]`)
 * into FlowQuery values the engine answers.
 */
import { MembraneError, isMembraneError } from "../../errors.js";
import { PolicyEngine, type DnsAnswer } from "../engine.js";
import type { EndpointSpec, EngineConfig, FlowQuery, PeerRef } from "../query.js";
import type { PolicyResource } from "../types.js";
import { policyRefString } from "../types.js";
import { dnsKey, findEndpoint, parsePeer } from "./peer.js";
import type { QuerySpec, ScenarioWorld } from "./types.js";

/** The part of PolicyEngine a session uses (tests may pass a fake). */
export type EngineLike = Pick<
  PolicyEngine,
  | "setNamespace"
  | "upsertEndpoint"
  | "upsertService"
  | "setNodeAddress"
  | "observeDns"
  | "forgetDns"
  | "dnsLookupSeen"
  | "upsertPolicy"
  | "decide"
  | "trace"
>;
export type EngineFactory = (config: Partial<EngineConfig>) => EngineLike;

export const defaultEngineFactory: EngineFactory = (config) => new PolicyEngine({ config });

/** Where a query came from, for error messages (`queries[3]` of a file, or CLI flags). */
export interface QueryWhere {
  readonly file?: string;
  readonly line?: number;
  /** Prefix of field paths: `queries[3].` for a scenario, `--` for CLI flags. */
  readonly prefix: string;
}

/** What a query's `dns:` changed in what the node knows (for the `--datapath` runner). */
export interface DnsChange {
  /** Answers the node's DNS proxy saw: the engine learned them (toFQDNs). */
  readonly learned: readonly (DnsAnswer & { readonly by: NonNullable<DnsAnswer["by"]> })[];
  /** Answers the proxy did not see: not learned, and why. */
  readonly unseen: readonly {
    readonly name: string;
    readonly ips: readonly string[];
    readonly why: string;
  }[];
  /** Answers learned before that the query's `dns:` no longer lists: forgotten. */
  readonly forgotten: readonly { readonly name: string; readonly ip: string }[];
}

const NO_DNS_CHANGE: DnsChange = { learned: [], unseen: [], forgotten: [] };

export class ScenarioSession {
  readonly engine: EngineLike;
  private readonly world: ScenarioWorld;
  /** Names (lower case, no trailing dot) -> addresses, in the order DNS gave them. */
  private dns = new Map<string, string[]>();
  /** The answers the engine learned (the DNS proxy saw them): `name ip` -> [name, ip]. */
  private learned = new Map<string, readonly [string, string]>();
  private change: DnsChange = NO_DNS_CHANGE;

  constructor(params: {
    world: ScenarioWorld;
    extraPolicies?: readonly PolicyResource[];
    engineFactory?: EngineFactory;
  }) {
    this.world = params.world;
    const w = params.world;
    this.engine = (params.engineFactory ?? defaultEngineFactory)(w.config);
    const namespaces = new Map(w.namespaces);
    for (const x of [...w.endpoints, ...w.services])
      if (!namespaces.has(x.namespace)) namespaces.set(x.namespace, {});
    for (const [name, labels] of namespaces) this.engine.setNamespace(name, labels);
    for (const s of w.services) this.engine.upsertService(s);
    for (const e of w.endpoints) {
      const key = `${e.namespace}/${e.name}`;
      this.wrap(() => this.engine.upsertEndpoint(e), w.file, w.endpointLines.get(key), `endpoint ${key}`);
    }
    for (const p of [...w.policies, ...(params.extraPolicies ?? [])]) {
      const file = p.source?.file ?? w.file;
      this.wrap(() => this.engine.upsertPolicy(p), file, p.source?.line, `policy ${policyRefString(p.ref)}`);
    }
  }

  /** Applies a query's DNS answers and node addresses, and returns the FlowQuery. */
  prepare(q: QuerySpec, where: QueryWhere): FlowQuery {
    this.change = NO_DNS_CHANGE;
    if (q.dns !== undefined) this.seeDns(q, where);
    const flow: { -readonly [K in keyof FlowQuery]: FlowQuery[K] } = {
      from: this.peer(q.from, where, "from"),
      to: this.peer(q.to, where, "to"),
      proto: q.proto,
    };
    if (q.port !== undefined) flow.port = q.port;
    if (q.icmpType !== undefined) flow.icmpType = q.icmpType;
    if (q.http) flow.http = q.http;
    if (q.kafka) flow.kafka = q.kafka;
    if (q.tls) flow.tls = q.tls;
    if (q.dnsQuery !== undefined) flow.dnsQuery = q.dnsQuery;
    if (q.auth !== undefined) flow.auth = q.auth;
    return flow;
  }

  /**
   * A query's `dns:` is the complete set of answers the node has seen before
   * the connection (`[]`: none): what `fqdn:` peers resolve to becomes
   * exactly that set, and the engine learns (toFQDNs) exactly the answers of
   * it the DNS proxy saw, forgetting the others.
   */
  private seeDns(q: QuerySpec, where: QueryWhere): void {
    const fromRef = parsePeer(q.from);
    const names = new Map<string, string[]>();
    const want = new Map<string, { answer: DnsAnswer; ip: string }>();
    const unseen: { name: string; ips: readonly string[]; why: string }[] = [];
    for (const d of q.dns ?? []) {
      const byText = d.by ?? (!("error" in fromRef) && fromRef.kind === "endpoint" ? q.from : undefined);
      const answer: { -readonly [K in keyof DnsAnswer]: DnsAnswer[K] } = { name: d.name, ips: d.ips };
      if (d.ttl !== undefined) answer.ttl = d.ttl;
      if (byText !== undefined) {
        const e = this.endpoint(byText, where, "dns.by");
        answer.by = { namespace: e.namespace, name: e.name };
      }
      const known = names.get(dnsKey(d.name)) ?? [];
      for (const ip of d.ips) if (!known.includes(ip)) known.push(ip);
      names.set(dnsKey(d.name), known);
      // Only a lookup by an endpoint whose DNS goes through the proxy teaches toFQDNs.
      if (answer.by === undefined) {
        unseen.push({
          name: d.name,
          ips: d.ips,
          why: "no endpoint of the node asked (the query's source is not an endpoint)",
        });
        continue;
      }
      if (!this.engine.dnsLookupSeen(answer.by, d.name)) {
        const who = `${answer.by.namespace}/${answer.by.name}`;
        const why = `the DNS proxy does not see ${who}'s lookup (no DNS rule of its egress policy lets ${d.name} through)`;
        unseen.push({ name: d.name, ips: d.ips, why });
        continue;
      }
      for (const ip of d.ips) want.set(`${dnsKey(d.name)} ${ip}`, { answer, ip });
    }
    this.dns = names;
    const forgotten: { name: string; ip: string }[] = [];
    for (const [k, [name, ip]] of this.learned) {
      if (want.has(k)) continue;
      this.engine.forgetDns(name, ip);
      this.learned.delete(k);
      forgotten.push({ name, ip });
    }
    const fresh = new Map<DnsAnswer, string[]>();
    for (const [k, { answer, ip }] of want) {
      if (this.learned.has(k)) continue;
      this.learned.set(k, [answer.name, ip]);
      fresh.set(answer, [...(fresh.get(answer) ?? []), ip]);
    }
    const learned: DnsChange["learned"][number][] = [];
    for (const [answer, ips] of fresh) {
      this.engine.observeDns({ ...answer, ips });
      if (answer.by) learned.push({ ...answer, ips, by: answer.by });
    }
    this.change = { learned, unseen, forgotten };
  }

  /** What the last prepared query's `dns:` changed. */
  dnsChange(): DnsChange {
    return this.change;
  }

  private peer(text: string, where: QueryWhere, field: string): PeerRef {
    const p = parsePeer(text);
    if ("error" in p) throw queryError("SCENARIO_INVALID", where, field, p.error);
    switch (p.kind) {
      case "endpoint": {
        const e = this.endpoint(text, where, field);
        return { kind: "endpoint", name: e.name, namespace: e.namespace };
      }
      case "host":
        return { kind: "host" };
      case "world":
      case "cidr":
        return { kind: "ip", ip: p.ip };
      case "remote-node":
      case "kube-apiserver":
        this.engine.setNodeAddress(p.ip, p.kind, ...nodeLabelsOf(this.world, p));
        return { kind: "ip", ip: p.ip };
      case "fqdn": {
        const ip = this.dns.get(dnsKey(p.name))?.[0];
        if (ip === undefined) {
          throw queryError("SCENARIO_INVALID", where, field, `no DNS answer seen for "${p.name}"`, {
            hint: `give the query dns: [{name: ${p.name}, ips: [...]}] (or --dns ${p.name}=<ip> for trace)`,
          });
        }
        return { kind: "ip", ip };
      }
    }
  }

  private endpoint(text: string, where: QueryWhere, field: string): EndpointSpec {
    const p = parsePeer(text);
    if ("error" in p || p.kind !== "endpoint")
      throw queryError("QUERY_INVALID", where, field, `"${text}" is not an endpoint`);
    const e = findEndpoint(this.world.endpoints, p);
    if ("error" in e) throw queryError("QUERY_INVALID", where, field, e.error);
    return e;
  }

  /** Re-throws engine errors with the place in the file that caused them. */
  private wrap(fn: () => unknown, file: string, line: number | undefined, what: string): void {
    try {
      fn();
    } catch (e) {
      if (!isMembraneError(e) || e.location !== undefined) throw e;
      const location = { file, ...(line !== undefined ? { line } : {}) };
      throw new MembraneError(e.code, `Cannot load ${what}: ${e.message}`, {
        location,
        cause: e,
        issues: e.issues.length > 0 ? e.issues : [{ ...location, message: e.message }],
        ...(e.hint !== undefined ? { hint: e.hint } : {}),
      });
    }
  }
}

function queryError(
  code: "SCENARIO_INVALID" | "QUERY_INVALID",
  where: QueryWhere,
  field: string,
  message: string,
  opts: { hint?: string } = {},
): MembraneError {
  const path = where.prefix + field;
  const location = {
    path,
    ...(where.file !== undefined ? { file: where.file } : {}),
    ...(where.line !== undefined ? { line: where.line } : {}),
  };
  return new MembraneError(code, `Cannot run query: invalid ${path}`, {
    location,
    issues: [{ ...location, message }],
    ...(opts.hint !== undefined ? { hint: opts.hint } : {}),
  });
}

/** A remote node's labels from the scenario's `nodes:` (as an optional argument: none when unlisted). */
export function nodeLabelsOf(
  w: Pick<ScenarioWorld, "nodes">,
  p: { readonly kind: string; readonly ip: string },
): [Readonly<Record<string, string>>] | [] {
  const n = p.kind === "remote-node" ? w.nodes?.find((x) => x.ip === p.ip) : undefined;
  return n && Object.keys(n.labels).length > 0 ? [n.labels] : [];
}
