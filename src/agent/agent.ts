/**
 * The node agent: wiring only. One controller per resource, over one work queue; the Enforcer
 * makes the kernel hold what they want together:
 *   API (unix socket) --> Agent --> controllers/*: endpoints (+ cni-attachments), remote endpoints,
 *                                   policies, namespaces, services, nodes, names, identities
 *                          |          (validate, persist, change the engine, bump desired)
 *                          v
 *   Enforcer: PolicyEngine (pure) --DesiredBuilder--> Reconciler (by delta) --> nftables
 *
 * Order of every change: validate, persist, compute, enforce in the kernel, and only then
 * create what carries traffic: a new endpoint's policy is in the kernel before its veth exists
 * (fail closed). Stopping leaves the kernel as it is; a restarted agent rebuilds the same desired
 * state from the store and reconciles without a flush. A new controller implements Controller
 * (controller.ts) and is listed in `controllers` below.
 */
import { MembraneError } from "../errors.js";
import { ClusterResources, clusterResources } from "../cluster/resources.js";
import { Reconciler } from "../datapath/reconcile.js";
import { BypassResetter } from "../datapath/conntrack-flush.js";
import { adoptNode, type NodeNetns } from "../datapath/node-adopt.js";
import { parsePolicies } from "../policy/api/index.js";
import { PolicyEngine } from "../policy/engine.js";
import type { ServiceSpec } from "../policy/query.js";
import type { PolicyRef, PolicyResource } from "../policy/types.js";
import type { ProxyTarget } from "../datapath/types.js";
import type { ProxyWorkers } from "../proxy/runtime/workers.js";
import { startProxySupervisor } from "./proxy-start.js";
import { controllerStatus, type Controller, type ControllerDeps } from "./controller.js";
import {
  EndpointsController,
  type CreateEndpointRequest,
  type EndpointView,
} from "./controllers/endpoints.js";
import { CniAttachments } from "./controllers/cni-attachments.js";
import { IdentitiesController } from "./controllers/identities.js";
import { NamesController, DNS_GC_MS } from "./controllers/names.js";
import { NamespacesController } from "./controllers/namespaces.js";
import { NodesController, type NodeKind } from "./controllers/nodes.js";
import { PoliciesController, type ApplyReport } from "./controllers/policies.js";
import { RemoteEndpointsController } from "./controllers/remote-endpoints.js";
import { ServicesController } from "./controllers/services.js";
import { LbController } from "./controllers/lb.js";
import type { RuntimeController } from "./controllers/runtime.js";
import { startRuntime } from "./controllers/runtime-bridge.js";
import { Enforcer } from "./enforcer.js";
import { flowLookup } from "./flow-lookup.js";
import { identitiesView, ipcacheView, type IdentityView, type IpcacheView } from "./views.js";
import { Ipam } from "./ipam.js";
import { agentObserver, type Observer } from "./observer.js";
import { ipcDropsStatus, registerIpcDrops, type IpcDropSources } from "./ipc-drops.js";
import { WorkQueue } from "./work-queue.js";
import { TracingPoliciesController } from "./controllers/tracing-policies.js";
import type { AgentParams } from "./agent-params.js";
import { startSpiffe, type SpiffeController } from "./controllers/spiffe.js";
import { newGateways } from "./gateway-start.js";
import type { GatewaysController } from "./controllers/gateways.js";
export type { ApplyReport } from "./controllers/policies.js";
export type { EndpointView } from "./controllers/endpoints.js";
export type { AgentParams } from "./agent-params.js";

export class Agent {
  private engineRef: PolicyEngine | undefined;
  readonly reconciler: Reconciler;
  private readonly queue: WorkQueue;
  private readonly ipam: Ipam;
  private node: NodeNetns | undefined;
  private timer: NodeJS.Timeout | undefined;
  private observerRef: Observer | undefined;
  /** Set before the proxy starts, so that stop() stops a proxy whose start failed half-way. */
  private proxyRef: ProxyWorkers | undefined;
  private proxyTarget: (() => ProxyTarget) | undefined; // the live workers' ports
  private readonly enforcer: Enforcer;
  private readonly identitiesCtl: IdentitiesController;
  private readonly endpoints: EndpointsController;
  private readonly policies: PoliciesController;
  private readonly namespaces: NamespacesController;
  private readonly services: ServicesController;
  /** Services in the kernel: v1 Service and EndpointSlice, the LB table (controllers/lb.ts). */
  readonly lb: LbController;
  private readonly nodes: NodesController;
  private readonly names: NamesController;
  /** Other nodes' endpoints (address -> identity of their labels); see controllers/remote-endpoints.ts. */
  readonly remoteEndpoints: RemoteEndpointsController;
  readonly cni: CniAttachments;
  readonly tracing: TracingPoliciesController; // TracingPolicies (controllers/tracing-policies.ts)
  /** Runtime events of the node's processes (controllers/runtime.ts); undefined when off. */
  runtime: RuntimeController | undefined;
  spiffe: SpiffeController | undefined; // SVIDs and each endpoint's Workload API (controllers/spiffe.ts); undefined when off
  readonly gateways: GatewaysController | undefined; // Gateway API and Ingress (gateway-start.ts); undefined when off
  /** Cluster mode: policies, namespaces, services and LB Services/slices shared through etcd (cluster/resources.ts). */
  readonly cluster: ClusterResources | undefined;
  /** Every controller, in restore order (namespaces, services and nodes before the endpoints they describe). */
  private readonly controllers: readonly Controller[];
  /** What the agent dropped as malformed from its proxy and gateway processes (status and metrics). */
  private readonly ipcDrops: IpcDropSources = { proxy: () => this.proxyRef?.dropped, gateway: () => this.gateways?.dropped }; // prettier-ignore

  /** The L7 proxy's process id, while it runs. */
  get proxyPid(): number | undefined { return this.proxyRef?.pid; } // prettier-ignore
  get proxyPids(): (number | undefined)[] { return this.proxyRef?.pids ?? []; } // prettier-ignore

  /** Flows of this node (undefined when flow visibility is off). */
  get observer(): Observer | undefined { return this.observerRef; } // prettier-ignore

  constructor(private readonly p: AgentParams) {
    this.queue = new WorkQueue(p.logger);
    this.ipam = new Ipam({ store: p.store, ipv4: p.podCidr4, ...(p.podCidr6 ? { ipv6: p.podCidr6 } : {}) });
    this.reconciler = new Reconciler({
      ...(p.nodeNetns !== undefined ? { netns: p.nodeNetns } : {}),
      table: p.table,
      logGroup: p.logGroup,
      idle: () => this.queue.quiet(), // the background check yields to changes
    });
    const deps: ControllerDeps = {
      store: p.store,
      logger: p.logger,
      engine: () => this.engine,
      // Every enforce is followed by the LB table's sync: backends follow the endpoints.
      enforce: () => this.enforcer.enforce().then((r) => this.lb.sync().then(() => r, (e: unknown) => (p.logger.error({ err: String(e) }, "services table not programmed"), r))), // prettier-ignore
      serial: (f, signal, what) => this.queue.run(f, signal, what),
      yieldToWork: () => this.queue.yieldToWork(),
    };
    this.identitiesCtl = new IdentitiesController({ ...deps, ...(p.clusterIdentities ? { cluster: p.clusterIdentities } : {}) }); // prettier-ignore
    const shared = p.cluster ? clusterResources.deps(deps, p.cluster) : deps; // their store: etcd
    this.namespaces = new NamespacesController(shared);
    this.services = new ServicesController(shared);
    this.lb = new LbController({ ...shared, table: `${p.table}_lb`, localCidrs: [p.podCidr4, ...(p.podCidr6 ? [p.podCidr6] : [])], ...(p.observe ? { logGroup: p.logGroup } : {}), ...(p.nodeNetns !== undefined ? { nodeNetns: p.nodeNetns } : {}), ...(p.lb ? { config: p.lb } : {}), ...(p.proxy ? { proxyPush: () => this.enforcer.pushProxy() } : {}) }); // prettier-ignore
    this.nodes = new NodesController(deps);
    this.remoteEndpoints = new RemoteEndpointsController(
      deps,
      [p.podCidr4, p.podCidr6].filter((c): c is string => c !== undefined),
    );
    this.endpoints = new EndpointsController({
      ...deps,
      ipam: this.ipam,
      netnsPrefix: p.netnsPrefix,
      nodeNetns: p.nodeNetns,
      node: () => this.node,
      idle: () => this.queue.idle(), // the adopted endpoints' check yields to changes
    });
    this.cni = new CniAttachments({
      ...deps,
      endpoints: this.endpoints,
      nodeNetns: p.nodeNetns,
      ipam: this.ipam,
      node: () => this.node,
    });
    const kernelBehind = (): boolean => this.enforcer.kernelBehind;
    this.policies = new PoliciesController({ ...shared, kernelBehind });
    const synced = [this.namespaces, this.services, this.policies, this.lb];
    this.cluster = p.cluster && clusterResources.watch({ ...shared, kernelBehind }, p.cluster, synced);
    this.names = new NamesController(deps, {
      ...(p.proxy?.dnsMinTtlSeconds !== undefined ? { minTtlSeconds: p.proxy.dnsMinTtlSeconds } : {}),
      // The proxy workers withdraw what they release without asking before the kernel changes.
      dropping: (pairs) => this.proxyRef?.forgetDns(pairs) ?? Promise.resolve(),
    });
    const ctls: Controller[] = [this.identitiesCtl, this.namespaces, this.services, this.lb, this.nodes];
    this.controllers = [...ctls, this.endpoints, this.remoteEndpoints, this.policies, this.names];
    this.gateways = newGateways(p, deps, { ipam: this.ipam, services: this.services, lb: this.lb, namespaces: this.namespaces, endpoints: this.endpoints, observer: () => this.observerRef, reservations: shared.store }); // prettier-ignore
    this.tracing = new TracingPoliciesController({ logger: p.logger, endpoints: () => this.listEndpoints(), store: p.store }); // prettier-ignore
    this.enforcer = new Enforcer({
      logger: p.logger,
      reconciler: this.reconciler,
      bypass: new BypassResetter(p.nodeNetns !== undefined ? { nodeNetns: p.nodeNetns } : {}),
      engine: () => this.engine,
      endpoints: this.endpoints,
      identities: this.identitiesCtl,
      controllers: () => this.controllers,
      proxy: () => (this.proxyRef && this.proxyTarget ? { supervisor: this.proxyRef, target: this.proxyTarget() } : undefined), // prettier-ignore
      observer: () => this.observerRef,
      tunnelPort: p.tunnelPort,
      mtlsTunnelGid: p.mtlsTunnelGid,
      auth: p.spiffe !== undefined, // mutual authentication: rules requiring it are enforced (src/auth/)
      services: () => this.lb.hasServices(), // the policy chains of service connections (compile-lb-policy.ts)
      lbL7: () => this.lb.l7Frontends(), // balanced per request by the proxy (proxy-lb.ts)
    });
  }

  /** The policy engine (exists once start() read the identities back). */
  get engine(): PolicyEngine {
    if (!this.engineRef) throw new MembraneError("API_FAILED", "Cannot answer: the agent is still starting");
    return this.engineRef;
  }

  /** Loads state from the store, makes the kernel match it, then serves. */
  async start(): Promise<void> {
    const gw = this.ipam.gateways();
    this.node = await adoptNode({
      ...(this.p.nodeNetns !== undefined ? { netns: this.p.nodeNetns } : {}),
      gateway4: gw.ipv4,
      podCidr4: this.p.podCidr4,
      ...(gw.ipv6 && this.p.podCidr6 ? { gateway6: gw.ipv6, podCidr6: this.p.podCidr6 } : {}),
    });
    // Identities first, so that every label set gets back the number the kernel holds.
    this.engineRef = new PolicyEngine({
      config: this.p.engine,
      allocator: await this.identitiesCtl.allocator(),
    });
    for (const c of this.controllers) await c.restore?.();
    if (this.p.observe) {
      const o = this.p.observe;
      this.observerRef = agentObserver(this.p, o, flowLookup(() => this.engine, this.endpoints, this.enforcer.ruleOrigins, o.nodeOfIp, o.encryptedPeer, (ip) => this.names.namesOf(ip), () => this.lb.frontends(), o.tunnelOrigin)); // prettier-ignore
      // Before the first enforce: drops from the very first packet are seen.
      await this.observerRef.start();
    }
    const registry = this.observerRef?.metrics.registry;
    if (registry) registerIpcDrops(registry, this.ipcDrops); // what the proxy and gateway sent malformed
    const rdeps = { logger: this.p.logger, endpoints: () => this.endpoints.list(), registry };
    this.runtime = await startRuntime(this.p.runtime, rdeps, this.tracing); // controllers/runtime-bridge.ts
    if (this.p.proxy) await this.startProxy(this.p.proxy, gw);
    const r = await this.enforcer.enforce();
    await this.lb.sync(); // the services' table (restored Services and EndpointSlices)
    this.p.logger.info(
      { endpoints: this.endpoints.size, policies: this.policies.size, kernelOps: r.ops },
      "agent started",
    );
    await this.endpoints.adopt(); // intact endpoints adopted (no process), missing ones created
    await this.cluster?.start(); // what other nodes applied meanwhile (listed, enforced, then watched)
    const identityOf = (ip: string): number => this.engine.ipcache.lookup(ip).identity;
    const authDeps = { identityOf, registry, remoteEndpoints: () => this.remoteEndpoints.list(), state: () => this.enforcer.applied }; // prettier-ignore
    this.spiffe = await startSpiffe(this.p, () => this.listEndpoints(), authDeps); // SVIDs, sockets, auth
    await this.gateways?.start(); // its namespace, the ingress address in the ipcache, the gateway process
    // The kernel is read in the background (once now: a restart adopted the table by its
    // stamp, then periodically); the work queue is used only to repair drift.
    const resync = (): void => void this.enforcer.resync((f) => this.queue.run(f, undefined, "repair"));
    resync();
    if (this.p.resyncMs > 0) (this.timer = setInterval(resync, this.p.resyncMs)).unref();
    await this.tracing.restore(); // stored TracingPolicies enforced again before the API serves
    this.tracing.start();
  }

  serving = (): void => this.endpoints.startVerification(); // run.ts, API up: check what start() adopted
  /** Stops serving; the kernel keeps enforcing what it holds. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.identitiesCtl.stop();
    await this.spiffe?.stop();
    await this.gateways?.stop();
    await this.endpoints.stopVerification();
    await this.cluster?.stop();
    this.names.stop();
    this.lb.stop();
    // A long nft transaction is killed, not waited for: the kernel keeps the old
    // state, the store holds what was acknowledged, and the next start reconciles.
    await this.reconciler.stop();
    await this.queue.stop();
    await this.proxyRef?.stop();
    await this.observerRef?.stop();
    await this.tracing.stop(); // detaches every TracingPolicy program: nothing kills without an agent
    await this.runtime?.stop();
  }

  /**
   * Starts the proxy process in the node's namespace, listening on the node's
   * gateway addresses (the DNAT targets of redirected connections).
   */
  private async startProxy(
    cfg: NonNullable<AgentParams["proxy"]>,
    gw: { ipv4: string; ipv6?: string },
  ): Promise<void> {
    const { supervisor, target } = startProxySupervisor({ ...this.p, logger: this.p.logger }, cfg, gw, {
      onL7: (event, src, dst) => this.observerRef?.pushL7(event, { src, dst }),
      onDnsAnswer: (_endpoint, name, ips, ttl) => this.names.answer(name, ips, ttl),
      dnsHeldUntil: (name, ips) => this.names.heldUntil(name, ips),
      // A worker died or came back: the redirect follows the live ones (fail closed meanwhile).
      onChange: () => void this.queue.run(() => this.enforcer.enforce(), undefined, "follow the proxy workers").catch((e: unknown) => this.p.logger.error({ err: String(e) }, "the redirect to the proxy workers was not updated")), // prettier-ignore
    });
    this.proxyRef = supervisor;
    await supervisor.start();
    this.proxyTarget = target;
    this.names.start(cfg.dnsGcIntervalMs ?? DNS_GC_MS);
  }

  // ---- DNS-learned names (controllers/names.ts) -----------------------------

  /**
   * A DNS answer handed over as if the node's DNS proxy had seen it
   * (`policy test --datapath`, when the scratch node cannot route the
   * lookup to the scenario's resolver): treated as the proxy's answers are;
   * resolves once enforced.
   */
  observeDnsAnswer(name: string, ips: readonly string[], ttl = 0): Promise<void> {
    return this.names.answer(name, ips, ttl);
  }

  /** Forgets DNS-learned addresses of `name` as if they had expired; resolves once enforced. */
  forgetDnsAnswer(name: string, ips: readonly string[]): Promise<void> {
    return this.names.forget(name, ips);
  }

  // ---- policies (controllers/policies.ts) ---------------------------------

  /** Parses, then applies (see applyPolicyResources). */
  async applyPolicies(text: string, file: string, signal?: AbortSignal): Promise<ApplyReport> {
    return this.applyPolicyResources(
      parsePolicies(text, file, { meshAuth: this.engine.config.meshAuth }),
      file,
      signal,
    );
  }

  /**
   * Applies policies already parsed and validated (the API parses them off
   * the event loop): all or none; unchanged ones change nothing.
   */
  applyPolicyResources(
    resources: readonly PolicyResource[],
    file: string,
    signal?: AbortSignal,
  ): Promise<ApplyReport> {
    return clusterResources.revision(this.cluster, this.policies.apply(resources, file, signal));
  }

  async deletePolicies(text: string, file: string, signal?: AbortSignal): Promise<ApplyReport> {
    const refs = parsePolicies(text, file, { meshAuth: this.engine.config.meshAuth }).map((r) => r.ref);
    return this.deletePolicyRefs(refs, file, signal);
  }

  /** Deletes the named policies, all or none. */
  deletePolicyRefs(refs: readonly PolicyRef[], file: string, signal?: AbortSignal): Promise<ApplyReport> {
    return clusterResources.revision(this.cluster, this.policies.delete(refs, file, signal));
  }

  listPolicies(): ReturnType<PoliciesController["list"]> {
    return this.policies.list();
  }

  // ---- endpoints (controllers/endpoints.ts) ---------------------------------

  /** Creates an endpoint; `ipv4`/`ipv6` ask for exact addresses of the pod CIDRs (else IPAM picks). */
  async createEndpointRequest(req: CreateEndpointRequest): Promise<EndpointView> {
    const v = await this.endpoints.create(req);
    await this.tracing.endpointsChanged(); // TracingPolicies selecting it attach before it is handed out
    await this.spiffe?.sync(); // its SVID and Workload API socket exist before it is handed out
    return v;
  }

  labelEndpoint(namespace: string, name: string, labels: Record<string, string>, replace: boolean): Promise<EndpointView> { return this.endpoints.label(namespace, name, labels, replace); } // prettier-ignore

  /** Stops the endpoint's processes (SIGTERM, `graceMs`, SIGKILL) and deletes it; says how many it stopped. */
  deleteEndpointRequest(namespace: string, name: string, graceMs = 0): Promise<{ stopped: number }> {
    return this.endpoints.delete(namespace, name, graceMs);
  }

  listEndpoints(): EndpointView[] { return this.endpoints.list(); } // prettier-ignore
  getEndpoint(namespace: string, name: string): EndpointView { return this.endpoints.get(namespace, name); } // prettier-ignore

  // ---- namespaces, nodes, services ------------------------------------------

  setNamespaceLabels(name: string, labels: Record<string, string>): Promise<void> {
    return this.namespaces.setLabels(name, labels);
  }

  /**
   * Tells the engine that `ip` is another node (`remote-node`) or an API server
   * backend (`kube-apiserver`), so policies on those entities apply to it.
   * Persisted under `nodes/<ip>` and restored on start.
   */
  setNodeAddress(ip: string, kind: NodeKind, labels?: Readonly<Record<string, string>>): Promise<void> {
    return this.nodes.setAddress(ip, kind, labels);
  }

  /** A service for toServices rules (backends: the pods it selects, else its `ips`); persisted. */
  upsertService(spec: ServiceSpec): Promise<void> {
    return this.services.upsert(spec);
  }

  deleteService(namespace: string, name: string): Promise<void> { return this.services.delete(namespace, name); } // prettier-ignore

  deleteNodeAddress(ip: string): Promise<void> { return this.nodes.deleteAddress(ip); } // prettier-ignore
  identities(): IdentityView[] { return identitiesView(this.engine, this.endpoints.all()); } // prettier-ignore
  ipcache(): IpcacheView[] { return ipcacheView(this.engine); } // prettier-ignore

  async datapathDiff(): Promise<string[]> {
    return this.queue.run(async () => {
      this.engine.regenerate();
      return this.reconciler.diff(this.enforcer.desiredState());
    });
  }

  status() {
    return {
      revision: this.engine.revision,
      endpoints: this.endpoints.size,
      policies: this.policies.size,
      identities: this.engine.identityCount,
      nodeNetns: this.p.nodeNetns ?? "(agent's own)",
      ...(this.p.stateDir !== undefined ? { stateDir: this.p.stateDir } : {}),
      table: `inet ${this.p.table}`,
      lastApply: this.enforcer.lastApply,
      controllers: controllerStatus(this.controllers),
      ...(this.spiffe ? { spiffe: this.spiffe.view() } : {}), // certificates and roots, never a key
      ...ipcDropsStatus(this.ipcDrops),
    };
  }
}
