/**
 * Wiring of the Gateway API / Ingress controller (controllers/gateways.ts)
 * into the agent, when `--gateway` is on: the gateway namespace is
 * `<netnsPrefix>-gateway`, its address is allocated once from the pod CIDR
 * (IPAM owner `gateway/ingress`), and each request it serves becomes an L7
 * flow (source: the client, destination: the backend endpoint; the request
 * leaves the gateway with the `ingress` identity). With a LoadBalancer pool
 * (--lb-pool), each Gateway naming no address gets its own from it
 * (gateway-addresses.ts; in cluster mode on a lease, so that a node removed for good does not
 * keep them); without one, they share the gateway address.
 */
import { ID } from "../identity/reserved.js";
import type { L7Event } from "../proxy/types.js";
import type { LbBackend } from "../datapath/lb-types.js";
import type { ServicePortInfo } from "../gateway/compile.js";
import type { GatewayEvent } from "../gateway/exchange.js";
import type { Store } from "../store/store.js";
import type { AgentParams } from "./agent-params.js";
import { GatewayAddresses, type GatewayAddressesCluster } from "./gateway-addresses.js";
import type { ControllerDeps } from "./controller.js";
import type { EndpointsController } from "./controllers/endpoints.js";
import { GatewaysController } from "./controllers/gateways.js";
import type { NamespacesController } from "./controllers/namespaces.js";
import type { ServicesController } from "./controllers/services.js";
import type { LbController } from "./controllers/lb.js";
import type { GatewayBackendService } from "./controllers/gateways.js";
import type { Ipam } from "./ipam.js";
import type { Observer } from "./observer.js";

export const DEFAULT_GATEWAY_SECRETS_DIR = "/etc/membrane/secrets";

export interface GatewayWiring {
  readonly ipam: Ipam;
  readonly services: ServicesController;
  readonly lb?: LbController;
  readonly namespaces: NamespacesController;
  readonly endpoints: EndpointsController;
  readonly observer: () => Observer | undefined;
  /** Where the Services' reservations are (the cluster's store in cluster mode): the Gateways' own addresses too. */
  readonly reservations: Store;
}

export function newGateways(
  p: AgentParams,
  deps: ControllerDeps,
  w: GatewayWiring,
): GatewaysController | undefined {
  if (!p.gateway) return undefined;
  const netns = p.netnsPrefix.endsWith("-") ? `${p.netnsPrefix}gateway` : `${p.netnsPrefix}-gateway`;
  const pool = {
    ...(p.lb?.loadBalancerPool !== undefined ? { loadBalancerPool: p.lb.loadBalancerPool } : {}),
    ...(p.lb?.loadBalancerPoolSecondary !== undefined ? { loadBalancerPoolSecondary: p.lb.loadBalancerPoolSecondary } : {}), // prettier-ignore
  };
  return new GatewaysController({
    ...deps,
    secretsDir: p.gateway.secretsDir ?? p.proxy?.secretsDir ?? DEFAULT_GATEWAY_SECRETS_DIR,
    netns,
    own: new GatewayAddresses({ store: w.reservations, logger: deps.logger, netns, pool, ...ownCluster(p) }),
    ...(p.nodeNetns !== undefined ? { nodeNetns: p.nodeNetns } : {}),
    nodeGateway: w.ipam.gateways().ipv4,
    address: () => w.ipam.allocate("gateway/ingress"),
    services: () => w.services.specs(),
    ...(w.lb ? { lbServices: () => lbBackends(w.lb as LbController) } : {}),
    endpoints: () => w.endpoints.list(),
    namespaceLabels: () => w.namespaces.labels(),
    onEvent: (e, address) => {
      const o = w.observer();
      if (o)
        o.pushL7(l7Of(e, w.endpoints), {
          src: e.client,
          dst: e.backend ? { address: e.backend.address, port: e.backend.port } : { address, port: 0 },
        });
    },
  });
}

/** Cluster mode: the Gateways' reservations name this node and live on a lease (gateway-addresses.ts). */
function ownCluster(p: AgentParams): { cluster?: GatewayAddressesCluster } {
  const c = p.cluster;
  if (c === undefined) return {};
  const ttl = p.gateway?.addressLeaseTtlSeconds;
  return {
    cluster: {
      node: c.node,
      storePrefix: c.kv.prefix,
      grantLease: (t, onLost) => c.kv.grantLease(t, onLost),
      ...(ttl !== undefined ? { leaseTtlSeconds: ttl } : {}),
    },
  };
}

/**
 * The `v1` Services as the gateway resolves backendRefs: the addresses of their
 * active backends, and per port its appProtocol and the port its endpoints serve it on
 * (lb/desired.ts activePortBackends: a named targetPort as the pod names it, a hand-written
 * EndpointSlice's port), as kube-proxy dials them.
 */
function lbBackends(lb: LbController): Record<string, GatewayBackendService> {
  const views = new Map(lb.list().map((v) => [`${v.namespace}/${v.name}`, v]));
  const out: Record<string, GatewayBackendService> = {};
  for (const s of lb.specs()) {
    const key = `${s.namespace}/${s.name}`;
    const active = (views.get(key)?.backends ?? []).filter((b) => b.state === "active");
    const ips = active.map((b) => b.address.slice(0, b.address.lastIndexOf(":")).replace(/^\[|\]$/g, ""));
    const used = ofFamilies(s.ipFamilies, ips);
    const byPort = lb.portBackends(key);
    const ports: Record<string, ServicePortInfo> = {};
    for (const p of s.ports) {
      const target = endpointPort((byPort?.get(p.port) ?? []).filter((b) => used(b.ip))) ?? p.targetPort;
      ports[String(p.port)] = {
        ...(p.appProtocol !== undefined ? { appProtocol: p.appProtocol } : {}),
        ...(typeof target === "number" ? { targetPort: target } : {}),
      };
    }
    out[key] = { addresses: [...new Set(ips.filter(used))], ports };
  }
  return out;
}

/**
 * The one port the gateway dials a Service port's endpoints on. The gateway keeps one port per
 * Service port, so endpoints that serve it on different ports (pods naming the targetPort with
 * different numbers) are dialled on the most common one (ties: the lowest). None: undefined.
 */
function endpointPort(backends: readonly LbBackend[]): number | undefined {
  const count = new Map<number, number>();
  for (const b of backends) count.set(b.port, (count.get(b.port) ?? 0) + 1);
  let best: number | undefined;
  for (const [port, n] of count) {
    const m = best === undefined ? 0 : (count.get(best) ?? 0);
    if (n > m || (n === m && port < (best ?? port))) best = port;
  }
  return best;
}

/**
 * Which backend addresses of a Service the gateway uses: an IPv6 or dual-stack Service's
 * IPv6 ones, an IPv4 Service's IPv4 ones; the other family when the Service has none of its own.
 */
function ofFamilies(
  families: readonly string[] | undefined,
  all: readonly string[],
): (ip: string) => boolean {
  const want6 = families?.includes("IPv6") ?? false;
  const has = all.some((ip) => ip.includes(":") === want6);
  return (ip) => ip.includes(":") === (has ? want6 : !want6);
}

/** A gateway request as an L7 flow: world -> backend, Hubble's HTTP fields. Exported for its test. */
export function l7Of(e: GatewayEvent, endpoints: Pick<EndpointsController, "recordByIp" | "view">): L7Event {
  const at = e.backend?.address;
  // One event per request: the endpoint by its address from the controller's index, and only that
  // one endpoint's view (list() built the view of every endpoint, each asking the policy engine).
  const rec = at !== undefined ? endpoints.recordByIp(at) : undefined;
  const ep = rec ? endpoints.view(rec) : undefined;
  return {
    type: "http",
    ...(e.httpVersion !== undefined ? { httpVersion: e.httpVersion } : {}),
    verdict: e.status >= 500 || e.status === 400 ? "error" : "forwarded",
    srcIdentity: ID.world,
    dstIdentity: ep?.identity ?? ID.ingress,
    endpoint: ep ? `${ep.namespace}/${ep.name}` : "gateway",
    direction: "ingress",
    ...(e.method !== undefined ? { method: e.method } : {}),
    ...(e.url !== undefined ? { url: `http://${e.url}` } : {}),
    status: e.status,
    latencyMs: e.latencyMs,
    ...(e.reason !== undefined ? { reason: e.reason } : {}),
  };
}
