/**
 * The Gateway API and Ingress resources as typed values (parsed once at the
 * edge, parse.ts / ingress.ts), and the route model the matcher and the
 * gateway server work on (compile.ts).
 */
export const GATEWAY_GROUP = "gateway.networking.k8s.io";
/** The GatewayClass `spec.controllerName` Membrane implements. */
export const CONTROLLER_NAME = "membrane.io/gateway-controller";
/** The Ingress class Membrane serves (`spec.ingressClassName`). */
export const INGRESS_CLASS = "membrane";

export interface Meta {
  readonly name: string;
  readonly namespace: string;
  readonly generation: number;
  /** RFC 3339, when given: the older route wins a precedence tie (then namespace/name). */
  readonly creationTimestamp?: string;
}

export interface GatewayClass {
  readonly kind: "GatewayClass";
  readonly meta: Meta;
  readonly controllerName: string;
}

export interface SecretRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
}

export type FromNamespaces =
  | { readonly from: "Same" | "All" }
  | { readonly from: "Selector"; readonly matchLabels: Readonly<Record<string, string>> };

export interface Listener {
  readonly name: string;
  readonly hostname?: string;
  readonly port: number;
  readonly protocol: string;
  readonly certificateRefs: readonly SecretRef[];
  readonly namespaces: FromNamespaces;
  /** allowedRoutes.kinds; empty = the protocol's default (HTTPRoute). */
  readonly kinds: readonly { readonly group: string; readonly kind: string }[];
}

export interface Gateway {
  readonly kind: "Gateway";
  readonly meta: Meta;
  readonly gatewayClassName: string;
  readonly listeners: readonly Listener[];
  readonly addresses: readonly { readonly type: string; readonly value: string }[];
}

export interface ParentRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
  readonly sectionName?: string;
  readonly port?: number;
}

export interface StringMatch {
  readonly type: "Exact" | "RegularExpression";
  readonly name: string;
  readonly value: string;
}

export interface RouteMatch {
  readonly path: { readonly type: "Exact" | "PathPrefix" | "RegularExpression"; readonly value: string };
  readonly headers: readonly StringMatch[];
  readonly queryParams: readonly StringMatch[];
  readonly method?: string;
}

export interface HeaderModifier {
  readonly set: readonly { readonly name: string; readonly value: string }[];
  readonly add: readonly { readonly name: string; readonly value: string }[];
  readonly remove: readonly string[];
}

export type PathModifier =
  | { readonly type: "ReplaceFullPath"; readonly value: string }
  | { readonly type: "ReplacePrefixMatch"; readonly value: string };

export interface BackendObjectRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
  readonly port?: number;
}

export type RouteFilter =
  | { readonly type: "RequestHeaderModifier"; readonly modifier: HeaderModifier }
  | { readonly type: "ResponseHeaderModifier"; readonly modifier: HeaderModifier }
  | {
      readonly type: "RequestRedirect";
      readonly scheme?: "http" | "https";
      readonly hostname?: string;
      readonly path?: PathModifier;
      readonly port?: number;
      readonly statusCode: number;
    }
  | { readonly type: "URLRewrite"; readonly hostname?: string; readonly path?: PathModifier }
  | {
      readonly type: "RequestMirror";
      readonly backendRef: BackendObjectRef;
      /** Share of requests mirrored, 0..1 (percent or fraction); absent: all. */
      readonly fraction?: number;
    };

export interface BackendRef extends BackendObjectRef {
  readonly weight: number;
  /** Filters applied only when this backend is picked (RequestHeaderModifier, ResponseHeaderModifier). */
  readonly filters?: readonly RouteFilter[];
}

/** An HTTPRoute rule's `timeouts` in milliseconds (timeouts.ts); absent or 0: no limit. */
export interface RuleTimeouts {
  readonly requestMs?: number;
  readonly backendRequestMs?: number;
}

export interface RouteRule {
  readonly matches: readonly RouteMatch[];
  readonly filters: readonly RouteFilter[];
  readonly backendRefs: readonly BackendRef[];
  /** `timeouts` (timeouts.ts); absent: no limit of the route's. */
  readonly timeouts?: RuleTimeouts;
}

export interface HTTPRoute {
  readonly kind: "HTTPRoute";
  readonly meta: Meta;
  readonly parentRefs: readonly ParentRef[];
  readonly hostnames: readonly string[];
  readonly rules: readonly RouteRule[];
}

/** A GRPCRoute method match: `/service/method` of the request, Exact or RE2 on each part. */
export interface GRPCMethodMatch {
  readonly type: "Exact" | "RegularExpression";
  readonly service?: string;
  readonly method?: string;
}

export interface GRPCRouteMatch {
  readonly method?: GRPCMethodMatch;
  readonly headers: readonly StringMatch[];
}

export interface GRPCRouteRule {
  readonly matches: readonly GRPCRouteMatch[];
  /** RequestHeaderModifier, ResponseHeaderModifier, RequestMirror (the kinds GRPCRoute allows). */
  readonly filters: readonly RouteFilter[];
  readonly backendRefs: readonly BackendRef[];
}

export interface GRPCRoute {
  readonly kind: "GRPCRoute";
  readonly meta: Meta;
  readonly parentRefs: readonly ParentRef[];
  readonly hostnames: readonly string[];
  readonly rules: readonly GRPCRouteRule[];
}

/** Either route kind, as attachment and status treat them alike. */
export type Route = HTTPRoute | GRPCRoute;

export interface ReferenceGrant {
  readonly kind: "ReferenceGrant";
  readonly meta: Meta;
  readonly from: readonly { readonly group: string; readonly kind: string; readonly namespace: string }[];
  readonly to: readonly { readonly group: string; readonly kind: string; readonly name?: string }[];
}

export interface IngressBackend {
  readonly service: string;
  readonly port: number;
}

export interface Ingress {
  readonly kind: "Ingress";
  readonly meta: Meta;
  readonly ingressClassName: string;
  readonly defaultBackend?: IngressBackend;
  readonly rules: readonly {
    readonly host?: string;
    readonly paths: readonly {
      readonly path: string;
      readonly pathType: "Exact" | "Prefix" | "ImplementationSpecific";
      readonly backend: IngressBackend;
    }[];
  }[];
  readonly tls: readonly { readonly hosts: readonly string[]; readonly secretName: string }[];
}

export type GatewayResource = GatewayClass | Gateway | HTTPRoute | GRPCRoute | ReferenceGrant | Ingress;

export const GATEWAY_KINDS: readonly GatewayResource["kind"][] = [
  "GatewayClass",
  "Gateway",
  "HTTPRoute",
  "GRPCRoute",
  "ReferenceGrant",
  "Ingress",
];

export function resourceKey(r: { readonly kind: string; readonly meta: Meta }): string {
  return r.kind === "GatewayClass"
    ? `${r.kind}/${r.meta.name}`
    : `${r.kind}/${r.meta.namespace}/${r.meta.name}`;
}
