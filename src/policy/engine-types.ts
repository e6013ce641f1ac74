/**
 * The records the PolicyEngine takes in and hands out (re-exported by
 * engine.ts, where callers import them from).
 *
 *   DnsAnswer --observeDns--> PolicyEngine --endpointPolicy--> EndpointPolicy (of an EndpointRecord)
 *                                  |
 *                                  +--resolvePeer--> ResolvedPeer --decide/trace--> TraceResult
 */
import type { Identity } from "../identity/allocator.js";
import type { LabelSet } from "../labels/label.js";
import type { Decision, EndpointSpec } from "./query.js";
import type { DirectionPolicy } from "./resolve.js";

export interface DnsAnswer {
  /** Queried name (any case, trailing dot optional). */
  readonly name: string;
  readonly ips: readonly string[];
  readonly ttl?: number;
  /** Endpoint that asked (namespace/name); the answer serves every endpoint of the node. */
  readonly by?: { readonly namespace: string; readonly name: string };
}

export interface TraceResult {
  readonly decision: Decision;
  /** Human explanation, one step per line. */
  readonly steps: readonly string[];
}

export interface EndpointRecord {
  readonly key: string;
  readonly spec: EndpointSpec;
  /** Every label, derived ones included. */
  readonly labels: LabelSet;
  readonly identity: Identity;
}

export interface EndpointPolicy {
  readonly endpoint: EndpointRecord;
  readonly ingress: DirectionPolicy;
  readonly egress: DirectionPolicy;
  /** Revision of the engine this policy was computed at. */
  readonly revision: number;
}

/** A resolved side of a query. */
export interface ResolvedPeer {
  readonly identity: Identity;
  readonly endpoint?: EndpointRecord;
  readonly isHost: boolean;
  readonly ip?: string;
}

/** What the engine has computed so far (tests and benchmarks check that a change costs what it changes). */
export interface EngineStats {
  /** SelectorPolicies computed (one per identity and named ports, shared by its endpoints). */
  readonly selectorPolicies: number;
  /** Endpoints regenerate() recomputed. */
  readonly endpointsRegenerated: number;
  /** Moves when a local endpoint's record or computed policy changes (not for host addresses). */
  readonly endpointRevision: number;
}
