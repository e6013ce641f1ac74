/**
 * The route table the gateway server serves (compile.ts builds it):
 *
 *   ServedPort (address:port, HTTP|HTTPS, certificates by SNI)
 *     └ ServedListener (one Gateway listener: hostname or any)
 *         └ VirtualHost (a route hostname after intersection; "" = any)
 *             └ CompiledRule[] in the spec's precedence order (HTTPRoute; GRPCRoute apart)
 */
import type { RE2JS } from "re2js";
import type { RouteFilter, RuleTimeouts } from "./model.js";

export interface CompiledStringMatch {
  readonly name: string;
  /** Lower-cased for headers. */
  readonly key: string;
  readonly exact?: string;
  readonly regex?: RE2JS;
}

export interface CompiledMatch {
  readonly pathType: "Exact" | "PathPrefix" | "RegularExpression";
  /** PathPrefix: without a trailing slash ("" for "/"). */
  readonly path: string;
  readonly pathRegex?: RE2JS;
  readonly method?: string;
  readonly headers: readonly CompiledStringMatch[];
  readonly queryParams: readonly CompiledStringMatch[];
}

/** A backend as a request may pick it: a Service port, or a reason it cannot be used (-> 500). */
export interface BackendTarget {
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
  readonly weight: number;
  readonly invalid?: "BackendNotFound" | "RefNotPermitted" | "InvalidKind" | "UnsupportedProtocol";
  /** With UnsupportedProtocol: the Service port's appProtocol. */
  readonly appProtocol?: string;
  /** A mirror: the share of requests it gets (absent: all). */
  readonly fraction?: number;
  /** The backendRef's own header modifiers, applied after the rule's when this backend is picked. */
  readonly filters?: readonly RouteFilter[];
  /**
   * The Service port's appProtocol says the backend speaks HTTP/2 (`kubernetes.io/h2c`, `grpc`):
   * requests go to it over HTTP/2 with prior knowledge; otherwise over HTTP/1.1.
   */
  readonly h2c?: boolean;
}

export interface CompiledRule {
  /** `namespace/name` of the HTTPRoute (or Ingress). */
  readonly route: string;
  readonly ruleIndex: number;
  readonly match: CompiledMatch;
  readonly filters: readonly RouteFilter[];
  readonly backends: readonly BackendTarget[];
  /** Mirrors that resolved (a mirror that does not is skipped). */
  readonly mirrors: readonly BackendTarget[];
  /** A GRPCRoute rule: its method match's service and method lengths (the spec's precedence). */
  readonly grpc?: { readonly service: number; readonly method: number };
  /** The HTTPRoute rule's `timeouts` (timeouts.ts). */
  readonly timeouts?: RuleTimeouts;
}

export interface VirtualHost {
  readonly hostname: string;
  /** HTTPRoute (and Ingress) rules. */
  readonly rules: readonly CompiledRule[];
  /** GRPCRoute rules: tried first for gRPC calls (content-type application/grpc), then `rules`. */
  readonly grpcRules?: readonly CompiledRule[];
}

export interface ServedListener {
  /** `namespace/name/listener`. */
  readonly id: string;
  readonly hostname: string;
  readonly vhosts: readonly VirtualHost[];
}

export interface ServedPort {
  readonly address: string;
  readonly port: number;
  readonly protocol: "HTTP" | "HTTPS";
  readonly listeners: readonly ServedListener[];
  /** HTTPS: certificates with the listener hostname they serve ("" = default). */
  readonly certificates: readonly {
    readonly hostname: string;
    readonly namespace: string;
    readonly name: string;
  }[];
}

export interface RouteTable {
  readonly ports: readonly ServedPort[];
}
