/**
 * A scenario after validation: the world (endpoints, services, policies),
 * connection attempts and the verdicts expected for them
 * (/work/shared/policy-scenarios.md describes the YAML).
 */
import type { ScenarioNode } from "./load-nodes.js";
import type { Issue } from "../../errors.js";
import { EXTENDED_PROTOCOLS, type ExtendedProtocol, type PolicyResource } from "../types.js";
import type {
  DenyHow,
  EndpointSpec,
  EngineConfig,
  HttpRequest,
  KafkaRequest,
  ServiceSpec,
} from "../query.js";

export type QueryProto = "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPv6" | ExtendedProtocol;
export const QUERY_PROTOS: readonly QueryProto[] = [
  "TCP",
  "UDP",
  "SCTP",
  "ICMP",
  "ICMPv6",
  ...EXTENDED_PROTOCOLS,
];
export const DENY_HOWS: readonly DenyHow[] = [
  "drop",
  "http-403",
  "dns-refused",
  "kafka-denied",
  "tls-reset",
  "auth-required",
];

/** A side of a connection as written in a scenario (`from` / `to`). */
export type PeerSpec =
  | { readonly kind: "endpoint"; readonly name: string; readonly namespace?: string }
  | { readonly kind: "world" | "cidr"; readonly ip: string }
  | { readonly kind: "host" }
  | { readonly kind: "remote-node" | "kube-apiserver"; readonly ip: string }
  | { readonly kind: "fqdn"; readonly name: string };

/** A DNS answer the node's DNS proxy saw. `by`: endpoint reference; default the query's `from`. */
export interface DnsObservation {
  readonly name: string;
  readonly ips: readonly string[];
  readonly by?: string;
  readonly ttl?: number;
}

/** One connection attempt, without expectation (what `policy trace` takes too). */
export interface QuerySpec {
  readonly from: string;
  readonly to: string;
  readonly proto: QueryProto;
  readonly port?: number;
  readonly icmpType?: number;
  readonly http?: HttpRequest;
  readonly kafka?: KafkaRequest;
  readonly tls?: { readonly sni: string };
  readonly dnsQuery?: string;
  readonly dns?: readonly DnsObservation[];
  readonly auth?: boolean;
}

export interface ScenarioQuery extends QuerySpec {
  /** Position in `queries`, from 0. */
  readonly index: number;
  readonly line?: number;
  readonly expect: "allow" | "deny";
  readonly how?: DenyHow;
  readonly note?: string;
}

/** Everything but the queries: what `policy trace --endpoints` reads. */
export interface ScenarioWorld {
  readonly file: string;
  readonly config: Partial<EngineConfig>;
  readonly namespaces: ReadonlyMap<string, Readonly<Record<string, string>>>;
  readonly services: readonly ServiceSpec[];
  readonly endpoints: readonly EndpointSpec[];
  /** Line of each endpoint in the file, by `namespace/name`. */
  readonly endpointLines: ReadonlyMap<string, number>;
  readonly policies: readonly PolicyResource[];
  /** Other nodes with their labels (load-nodes.ts); a remote-node peer not listed has none. */
  readonly nodes?: readonly ScenarioNode[];
  /** Warnings of the policy parser (accepted, but worth telling), at lines of the scenario file. */
  readonly warnings?: readonly Issue[];
}

export interface Scenario extends ScenarioWorld {
  readonly name: string;
  readonly source?: string;
  readonly category?: string;
  readonly notes?: string;
  readonly queries: readonly ScenarioQuery[];
}

/** The outcome of one query. */
export interface QueryResult {
  readonly index: number;
  readonly line?: number;
  readonly from: string;
  readonly to: string;
  readonly proto: QueryProto;
  readonly port?: number;
  readonly icmpType?: number;
  /** e.g. `GET /v1/x`, `dns example.com`, `kafka produce topic=t`, `sni a.b`. */
  readonly l7?: string;
  readonly expect: "allow" | "deny";
  readonly expectHow?: DenyHow;
  readonly actual: "allow" | "deny";
  readonly actualHow?: DenyHow;
  readonly pass: boolean;
  /** Deciding rules, e.g. `ingress: default/rule1 spec.ingress[0]`. */
  readonly decidedBy: readonly string[];
  readonly note?: string;
}

export interface ScenarioError {
  readonly code: string;
  readonly message: string;
  readonly issues: readonly { file?: string; line?: number; path?: string; message: string }[];
  readonly hint?: string;
  /** Stack of an unexpected (internal) error, shown with --debug. */
  readonly stack?: string;
}

export interface ScenarioResult {
  readonly file: string;
  /** Absent when the file could not be loaded. */
  readonly name?: string;
  readonly results: readonly QueryResult[];
  /** Warnings of the policy parser about the scenario's policies. */
  readonly warnings?: readonly Issue[];
  /** Set when the file is invalid or could not be run; counts as one failure. */
  readonly error?: ScenarioError;
}
