/**
 * Gateway API and Ingress resources + what the node knows (services,
 * namespace labels, certificate files) -> the RouteTable to serve and the
 * status of every object. Pure: no I/O, no clock (`now` is an input).
 *
 *   GatewayClass (controllerName ours) <- Gateway (listeners.ts) <- HTTPRoute / GRPCRoute parentRefs
 *     attach: sectionName/port, allowedRoutes (namespaces, kinds), hostname intersection
 *     resolve: backendRefs (kind, ReferenceGrant, Service exists)
 *   Ingress (class membrane) -> ingress.ts routes on the internal ingress Gateway
 */
import { ingressRoutes, INGRESS_GATEWAY } from "./ingress.js";
import { checkGateways, olderFirst, type CheckedListener } from "./listeners.js";
import {
  CONTROLLER_NAME,
  GATEWAY_GROUP,
  INGRESS_CLASS,
  resourceKey,
  type BackendObjectRef,
  type Gateway,
  type GatewayClass,
  type GatewayResource,
  type GRPCRoute,
  type HTTPRoute,
  type Ingress,
  type ReferenceGrant,
  type Route,
} from "./model.js";
import { compileGrpcRules, sortGrpcRules } from "./grpc-rules.js";
import { intersectHostnames } from "./hostnames.js";
import { refPermitted } from "./refs.js";
import { compileRule, sortRules } from "./rules.js";
import { conditionMaker, type RouteParentStatus, type StatusSet } from "./status.js";
import type { BackendTarget, CompiledRule, RouteTable, ServedPort, VirtualHost } from "./table.js";
import { servedAddresses } from "./dual-stack.js";

export interface GatewayWorld {
  readonly resources: readonly GatewayResource[];
  readonly hasService: (namespace: string, name: string) => boolean;
  readonly namespaceLabels: (namespace: string) => Readonly<Record<string, string>>;
  readonly certificateProblem: (namespace: string, name: string) => string | undefined;
  /** What the Service says of a port: its appProtocol (`kubernetes.io/h2c`, `grpc`), the endpoints' port (targetPort). */
  readonly servicePort?: (namespace: string, name: string, port: number) => ServicePortInfo | undefined;
  /** Addresses gateways can be served on; the first is the default (and the Ingress address). */
  readonly addresses: readonly string[];
  /** `namespace/name` -> a Gateway's own addresses (protocol.ts GatewayInputs.gatewayAddresses). */
  readonly gatewayAddresses?: Readonly<Record<string, readonly string[]>>;
  /** Why none could be reserved, when the store refused it (protocol.ts GatewayInputs.gatewayAddressesRefused). */
  readonly gatewayAddressesRefused?: string;
  readonly now: string;
}

export interface ServicePortInfo {
  readonly appProtocol?: string;
  readonly targetPort?: number;
}

export interface CompiledGateways {
  readonly table: RouteTable;
  readonly status: StatusSet;
}

export function compileGateways(w: GatewayWorld): CompiledGateways {
  const of = <K extends GatewayResource["kind"]>(k: K) =>
    w.resources.filter((r): r is Extract<GatewayResource, { kind: K }> => r.kind === k);
  const status: StatusSet = {
    gatewayClasses: new Map(),
    gateways: new Map(),
    routes: new Map(),
    ingresses: new Map(),
  };
  const ours = new Set<string>();
  for (const c of of("GatewayClass") as GatewayClass[]) {
    if (c.controllerName !== CONTROLLER_NAME) continue;
    ours.add(c.meta.name);
    const cond = conditionMaker(c.meta.generation, w.now);
    status.gatewayClasses.set(resourceKey(c), {
      conditions: [
        cond("Accepted", true, "Accepted", "handled by Membrane"),
        cond("SupportedVersion", true, "SupportedVersion", "gateway.networking.k8s.io/v1"),
      ],
    });
  }
  const grants = of("ReferenceGrant") as ReferenceGrant[];
  const ingresses = (of("Ingress") as Ingress[]).filter((i) => i.ingressClassName === INGRESS_CLASS);
  const gateways = (of("Gateway") as Gateway[]).filter((g) => ours.has(g.gatewayClassName));
  const ingressGw = ingressGateway(ingresses);
  const checked = checkGateways({
    gateways: ingressGw ? [...gateways, ingressGw] : gateways,
    grants: ingressGw ? [...grants, ...ingressGrants(ingresses)] : grants,
    addresses: w.addresses,
    ...(w.gatewayAddresses ? { own: w.gatewayAddresses } : {}),
    ...(w.gatewayAddressesRefused ? { ownRefused: w.gatewayAddressesRefused } : {}),
    certificateProblem: w.certificateProblem,
    now: w.now,
  });
  const routes: Route[] = [
    ...(of("HTTPRoute") as HTTPRoute[]),
    ...(of("GRPCRoute") as GRPCRoute[]),
    ...ingresses.flatMap(ingressRoutes),
  ].sort(olderFirst);
  const attached = new Map<CheckedListener, { route: Route; hostnames: string[] }[]>();
  for (const route of routes) {
    const parents: RouteParentStatus[] = [];
    const resolved = resolveBackends(route, grants, w);
    for (const ref of route.parentRefs) {
      if (ref.group !== GATEWAY_GROUP || ref.kind !== "Gateway") continue;
      const ns = ref.namespace ?? route.meta.namespace;
      const gw = checked.find((g) => g.gateway.meta.namespace === ns && g.gateway.meta.name === ref.name);
      if (!gw) continue; // not a Gateway of ours: its controller writes this parent's status
      const cond = conditionMaker(route.meta.generation, w.now);
      const accepted = attach(route, ref, gw.listeners, w, attached);
      parents.push({
        parentRef: { ...ref, namespace: ns },
        controllerName: CONTROLLER_NAME,
        conditions: [
          accepted.ok
            ? cond("Accepted", true, "Accepted", "route attached")
            : cond("Accepted", false, accepted.reason, accepted.message),
          resolved.problem
            ? cond("ResolvedRefs", false, resolved.problem.reason, resolved.problem.message)
            : cond("ResolvedRefs", true, "ResolvedRefs", "all references resolved"),
        ],
      });
    }
    if (!route.meta.namespace.startsWith("_") && !route.meta.name.includes("#") && parents.length > 0)
      status.routes.set(resourceKey(route), { parents });
  }
  for (const g of checked) {
    if (g.gateway === ingressGw) continue;
    status.gateways.set(resourceKey(g.gateway), {
      addresses: servedAddresses(g, w.addresses).map((value) => ({ type: "IPAddress", value })),
      conditions: g.conditions,
      listeners: g.listeners.map((l) => ({
        name: l.listener.name,
        supportedKinds: l.supportedKinds,
        attachedRoutes: attached.get(l)?.length ?? 0,
        conditions: l.conditions,
      })),
    });
  }
  for (const i of ingresses)
    status.ingresses.set(resourceKey(i), {
      loadBalancer: {
        ingress: servedAddresses({ gateway: { addresses: [] }, address: w.addresses[0] }, w.addresses).map(
          (ip) => ({ ip }),
        ),
      },
    });
  return {
    table: buildTable(
      checked.flatMap((g) => g.listeners),
      attached,
      grants,
      w,
    ),
    status,
  };
}

type Attach = { ok: true } | { ok: false; reason: string; message: string };

function attach(
  route: Route,
  ref: Route["parentRefs"][number],
  listeners: readonly CheckedListener[],
  w: GatewayWorld,
  attached: Map<CheckedListener, { route: Route; hostnames: string[] }[]>,
): Attach {
  const named = listeners.filter(
    (l) =>
      (ref.sectionName === undefined || l.listener.name === ref.sectionName) &&
      (ref.port === undefined || l.listener.port === ref.port),
  );
  if (named.length === 0)
    return {
      ok: false,
      reason: "NoMatchingParent",
      message: `no listener ${ref.sectionName ?? ""} on the Gateway`,
    };
  const allowed = named.filter((l) => allows(l, route, w));
  if (allowed.length === 0)
    return {
      ok: false,
      reason: "NotAllowedByListeners",
      message: "no listener allows routes from this namespace or of this kind",
    };
  let any = false;
  for (const l of allowed) {
    const hostnames = intersectHostnames(l.listener.hostname, route.hostnames);
    if (hostnames.length === 0) continue;
    any = true;
    const list = attached.get(l) ?? [];
    list.push({ route, hostnames });
    attached.set(l, list);
  }
  return any
    ? { ok: true }
    : {
        ok: false,
        reason: "NoMatchingListenerHostname",
        message: "no listener hostname intersects the route's hostnames",
      };
}

function allows(l: CheckedListener, route: Route, w: GatewayWorld): boolean {
  if (!l.conditions.some((c) => c.type === "Accepted" && c.status === "True")) return false;
  if (!l.supportedKinds.some((k) => k.group === GATEWAY_GROUP && k.kind === route.kind)) return false;
  const ns = l.listener.namespaces;
  if (ns.from !== "Selector") return ns.from === "All" || route.meta.namespace === l.gateway.meta.namespace;
  const labels: Record<string, string> = {
    "kubernetes.io/metadata.name": route.meta.namespace,
    ...w.namespaceLabels(route.meta.namespace),
  };
  return Object.entries(ns.matchLabels).every(([k, v]) => labels[k] === v);
}

interface Resolved {
  readonly problem?: { readonly reason: string; readonly message: string };
}

/** The first backendRef problem of the route, as ResolvedRefs reports it. */
function resolveBackends(route: Route, grants: readonly ReferenceGrant[], w: GatewayWorld): Resolved {
  for (const rule of route.rules)
    for (const b of rule.backendRefs) {
      const t = target(route, b, 0, grants, w);
      if (t.invalid) return { problem: { reason: t.invalid, message: problemText(t, b) } };
    }
  return {};
}

function problemText(t: BackendTarget, b: BackendObjectRef): string {
  if (t.invalid === "InvalidKind")
    return `${b.group === "" ? "core" : b.group}/${b.kind} ${b.name} is not a Service`;
  if (t.invalid === "RefNotPermitted")
    return `no ReferenceGrant in ${t.namespace} lets this route use Service ${t.name}`;
  if (t.invalid === "UnsupportedProtocol")
    return `Service ${t.namespace}/${t.name} port ${t.port}: appProtocol ${t.appProtocol ?? ""} (WebSocket) is not supported by this gateway`; // prettier-ignore
  return `Service ${t.namespace}/${t.name} not found`;
}

export function target(
  route: Route,
  b: BackendObjectRef,
  weight: number,
  grants: readonly ReferenceGrant[],
  w: GatewayWorld,
): BackendTarget {
  const namespace = b.namespace ?? route.meta.namespace;
  const base = { namespace, name: b.name, port: b.port ?? 0, weight };
  if (b.group !== "" || b.kind !== "Service") return { ...base, invalid: "InvalidKind" };
  const from = { group: GATEWAY_GROUP, kind: route.kind, namespace: route.meta.namespace };
  if (
    !route.meta.namespace.startsWith("_") &&
    !refPermitted(grants, from, { group: "", kind: "Service", name: b.name, namespace })
  )
    return { ...base, invalid: "RefNotPermitted" };
  if (!w.hasService(namespace, b.name)) return { ...base, invalid: "BackendNotFound" };
  const info = w.servicePort?.(namespace, b.name, base.port);
  const port = info?.targetPort !== undefined ? { port: info.targetPort } : {};
  const app = info?.appProtocol;
  // WebSocket backends (the Gateway API's kubernetes.io/ws, wss) are not served: refused as the spec says.
  if (app === "kubernetes.io/ws" || app === "kubernetes.io/wss")
    return { ...base, invalid: "UnsupportedProtocol", appProtocol: app };
  return { ...base, ...port, ...(app === "kubernetes.io/h2c" || app === "grpc" ? { h2c: true } : {}) };
}

function buildTable(
  listeners: readonly CheckedListener[],
  attached: Map<CheckedListener, { route: Route; hostnames: string[] }[]>,
  grants: readonly ReferenceGrant[],
  w: GatewayWorld,
): RouteTable {
  const ports = new Map<
    string,
    ServedPort & {
      listeners: ServedPort["listeners"][number][];
      certificates: ServedPort["certificates"][number][];
    }
  >();
  // Checked addresses first; a Gateway's second address (dual-stack.ts) where the listener did not
  // yield it to another (listeners.ts).
  const on = listeners.filter((x) => x.served);
  const served = [
    ...on.map((l) => ({ l, address: l.address })),
    ...on.flatMap((l) =>
      servedAddresses(l, w.addresses)
        .slice(1)
        .filter((address) => !(l.yielded ?? []).includes(address))
        .map((address) => ({ l, address })),
    ),
  ];
  for (const { l, address } of served) {
    const key = `${address}:${l.listener.port}`;
    const port = ports.get(key) ?? {
      address,
      port: l.listener.port,
      protocol: l.listener.protocol as "HTTP" | "HTTPS",
      listeners: [],
      certificates: [],
    };
    ports.set(key, port);
    const hostname = l.listener.hostname ?? "";
    for (const c of l.certificates) port.certificates.push({ hostname, ...c });
    const byHost = new Map<string, { http: CompiledRule[]; grpc: CompiledRule[] }>();
    for (const { route, hostnames } of attached.get(l) ?? []) {
      const resolve = (b: BackendObjectRef, weight: number): BackendTarget =>
        target(route, b, weight, grants, w);
      const grpc = route.kind === "GRPCRoute";
      const rules =
        route.kind === "GRPCRoute"
          ? compileGrpcRules(route, resolve)
          : route.rules.flatMap((r, i) => compileRule(route, r, i, resolve));
      for (const h of hostnames) {
        const v = byHost.get(h) ?? { http: [], grpc: [] };
        (grpc ? v.grpc : v.http).push(...rules);
        byHost.set(h, v);
      }
    }
    // Another Gateway's HTTP listener with this hostname on this port (listeners.ts): one listener, its
    // routes' rules ordered together.
    const same = port.listeners.find((x) => x.hostname === hostname);
    const id = `${l.gateway.meta.namespace}/${l.gateway.meta.name}/${l.listener.name}`;
    const vhosts = same ? mergeVhosts(same.vhosts, byHost) : vhostsOf(byHost);
    if (same) port.listeners[port.listeners.indexOf(same)] = { ...same, vhosts };
    else port.listeners.push({ id, hostname, vhosts });
  }
  return { ports: [...ports.values()] };
}

type RulesByHost = Map<string, { http: CompiledRule[]; grpc: CompiledRule[] }>;

function vhostsOf(byHost: RulesByHost): VirtualHost[] {
  return [...byHost].map(([h, v]) => ({
    hostname: h,
    rules: sortRules(v.http),
    ...(v.grpc.length > 0 ? { grpcRules: sortGrpcRules(v.grpc) } : {}),
  }));
}

function mergeVhosts(old: readonly VirtualHost[], byHost: RulesByHost): VirtualHost[] {
  const all: RulesByHost = new Map();
  for (const v of old) all.set(v.hostname, { http: [...v.rules], grpc: [...(v.grpcRules ?? [])] });
  for (const [h, v] of byHost) {
    const into = all.get(h) ?? { http: [], grpc: [] };
    into.http.push(...v.http);
    into.grpc.push(...v.grpc);
    all.set(h, into);
  }
  return vhostsOf(all);
}

/** The internal Gateway the Ingresses share (ingress.ts): port 80, and 443 per TLS secret. */
function ingressGateway(ingresses: readonly Ingress[]): Gateway | undefined {
  if (ingresses.length === 0) return undefined;
  const tls = ingresses.flatMap((i) => i.tls.map((t) => ({ ns: i.meta.namespace, ...t })));
  const all = { from: "All" as const };
  return {
    kind: "Gateway",
    meta: { ...INGRESS_GATEWAY, generation: 1 },
    gatewayClassName: INGRESS_CLASS,
    addresses: [],
    listeners: [
      { name: "http", port: 80, protocol: "HTTP", certificateRefs: [], namespaces: all, kinds: [] },
      ...(tls.length > 0
        ? [
            {
              name: "https",
              port: 443,
              protocol: "HTTPS",
              certificateRefs: tls.map((t) => ({
                group: "",
                kind: "Secret",
                name: t.secretName,
                namespace: t.ns,
              })),
              namespaces: all,
              kinds: [],
            },
          ]
        : []),
    ],
  };
}

/** The internal Gateway may read each Ingress's own TLS secret. */
function ingressGrants(ingresses: readonly Ingress[]): ReferenceGrant[] {
  return ingresses.map((i) => ({
    kind: "ReferenceGrant",
    meta: { namespace: i.meta.namespace, name: `_ingress-${i.meta.name}`, generation: 1 },
    from: [{ group: GATEWAY_GROUP, kind: "Gateway", namespace: INGRESS_GATEWAY.namespace }],
    to: i.tls.map((t) => ({ group: "", kind: "Secret", name: t.secretName })),
  }));
}
