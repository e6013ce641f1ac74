/**
 * PolicyEngine: the pure policy core, end to end; a facade over its parts.
 *
 *   namespaces, endpoints (local and remote), services, nodes, DNS answers     policies (PolicyResource)
 *            |                                                                     |
 *            v                                                                     v
 *   EndpointTable, OutsideIdentities --> identities --> ipcache, SelectorCache <-- Repository (rules)
 *                                                            |
 *                                                            v  selections changed: stale, holders dirty
 *   PolicyCache: SelectorPolicy per (identity, named ports) --> per-endpoint DirectionPolicy (MapState)
 *                                                            |
 *            decide(FlowQuery) / trace(FlowQuery) / endpointPolicy() and regenerate() for the datapath
 *
 * The parts: endpoint-table.ts (workloads and the addresses they own),
 * outside-identities.ts (CIDR and FQDN identities), repository.ts (policies
 * and their rules), policy-cache.ts (computed SelectorPolicies and the
 * endpoints to regenerate), service.ts, engine-types.ts (the records). This
 * file wires them: which change marks what stale, and in which order
 * (make-before-break: new identities and selectors before old ones go).
 *
 * No I/O, no clocks: the agent feeds it and reads desired state from it; the
 * CLI feeds it from scenario files. Every change bumps `revision`; computed
 * policies are recomputed only for the endpoints a change can affect.
 */
import { IdentityAllocator, type Identity, type IdentityAllocatorLike } from "../identity/allocator.js";
import { ID, reservedIds } from "../identity/reserved.js";
import { IPCache } from "../ipcache/ipcache.js";
import { identityRelevant, nodeLabelSet } from "../labels/k8s.js";
import { MembraneError } from "../errors.js";
import { normalizeName } from "./l7/fqdn.js";
import { decideFlow, explainFlow } from "./decide.js";
import type { ResolvedService } from "./peer.js";
import { SelectorCache } from "./selectorcache.js";
import { proxySeesLookup } from "./dns-visibility.js";
import { resolveDirection, type ResolveContext } from "./resolve.js";
import { OutsideIdentities } from "./outside-identities.js";
import { PolicyCache, policySignature } from "./policy-cache.js";
import { Repository } from "./repository.js";
import { hostPolicyOf, type HostPolicy } from "./host-policy.js";
import { NodeAddresses, type NodeAddressKind } from "./node-addresses.js";
import { resolvePeerIn } from "./resolve-peer.js";
import { resolveService } from "./service.js";
import { EndpointTable, type RemoteEndpoint } from "./endpoint-table.js";
import type { DnsAnswer, EndpointPolicy, EndpointRecord, EngineStats, ResolvedPeer, TraceResult } from "./engine-types.js"; // prettier-ignore
import type { PodSource } from "./pod-journal.js";
import {
  DEFAULT_ENGINE_CONFIG,
  type Decision,
  type EndpointSpec,
  type EngineConfig,
  type FlowQuery,
  type PeerRef,
  type RemoteEndpointSpec,
  type ServiceSpec,
} from "./query.js";
import type { PolicyRef, PolicyResource, Rule } from "./types.js";

export type { DnsAnswer, EndpointPolicy, EndpointRecord, ResolvedPeer, TraceResult } from "./engine-types.js";
export type { EngineStats } from "./engine-types.js";
export type { NodeAddressKind } from "./node-addresses.js";

export class PolicyEngine {
  readonly config: EngineConfig;
  private readonly allocator: IdentityAllocatorLike;
  private readonly services = new Map<string, ResolvedService>();
  private readonly serviceSpecs = new Map<string, ServiceSpec>();
  readonly cache: SelectorCache;
  readonly ipcache: IPCache;
  /** Local and remote endpoints, their namespaces and addresses. */
  private readonly table: EndpointTable;
  private readonly repo: Repository;
  /** SelectorPolicies per (identity, own named ports), and the endpoints to regenerate. */
  private readonly policyCache: PolicyCache;
  /** CIDR and DNS-learned (FQDN) identities. */
  private readonly outside: OutsideIdentities;
  private readonly nodeAddrs: NodeAddresses;
  private rev = 1;
  private regenerated = 0;

  constructor(params: { config?: Partial<EngineConfig>; allocator?: IdentityAllocatorLike } = {}) {
    this.config = { ...DEFAULT_ENGINE_CONFIG, ...(params.config ?? {}) };
    if (this.config.policyCIDRMatchMode !== "") {
      throw new MembraneError(
        "CONFIG_INVALID",
        `Cannot use policyCIDRMatchMode "${this.config.policyCIDRMatchMode}": only "" (CIDR rules never select nodes or pods) is supported`,
      );
    }
    this.allocator = params.allocator ?? new IdentityAllocator();
    const nodeLabels = nodeLabelSet(this.config.nodeLabels); // for fromNodes/toNodes
    this.cache = new SelectorCache({ cluster: this.config.cluster, services: this.services, nodeLabels });
    this.ipcache = new IPCache(this.config.dualStack);
    this.table = new EndpointTable({ ipcache: this.ipcache, cluster: this.config.cluster });
    this.repo = new Repository(this.cache);
    this.policyCache = new PolicyCache(this.cache);
    const deps = {
      allocator: this.allocator,
      ipcache: this.ipcache,
      cache: this.cache,
      changed: (keys: readonly string[]) => this.policyCache.markChanged(keys),
      release: (id: number) => this.releaseIdentity(id),
    };
    this.outside = new OutsideIdentities({ ...deps, dualStack: this.config.dualStack });
    this.nodeAddrs = new NodeAddresses(deps);
    for (const ident of reservedIds(this.config.dualStack).map((id) => this.allocator.get(id)))
      if (ident) this.cache.upsertIdentity(ident);
  }

  get revision(): number { return this.rev; } // prettier-ignore

  // ---- world state -------------------------------------------------------

  setNamespace(name: string, labels: Readonly<Record<string, string>>): void {
    this.table.setNamespace(name, labels);
    for (const ep of [...this.table.locals()]) if (ep.spec.namespace === name) this.upsertEndpoint(ep.spec);
    for (const r of [...this.table.remoteValues()])
      if (r.spec.namespace === name) this.upsertRemoteEndpoint(r.spec);
    this.bump();
  }

  upsertEndpoint(spec: EndpointSpec): Identity {
    const key = `${spec.namespace}/${spec.name}`;
    this.table.checkLocal(key, spec.ips);
    const labels = this.table.labelsOf(spec);
    const identity =
      spec.kind === "health"
        ? (this.allocator.get(ID.health) as Identity)
        : this.allocator.allocate(identityRelevant(labels));
    const old = this.table.setLocal({ key, spec, labels, identity });
    // Make-before-break: the new identity is known to every selector before the old one goes.
    this.policyCache.markChanged(this.cache.upsertIdentity(identity));
    if (old && old.identity.id !== identity.id) this.releaseIdentity(old.identity.id);
    this.policyCache.touch(key);
    if ((spec.namedPorts?.length ?? 0) > 0 || (old?.spec.namedPorts?.length ?? 0) > 0)
      this.policyCache.markNamedPortUsers();
    this.bump();
    return identity;
  }

  deleteEndpoint(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const old = this.table.deleteLocal(key);
    if (!old) return;
    this.policyCache.forget(key);
    if (old.spec.kind !== "health") this.releaseIdentity(old.identity.id);
    this.bump();
  }

  /** Another node's endpoint: its address gets the identity of its labels (no policy computed here). */
  upsertRemoteEndpoint(spec: RemoteEndpointSpec): Identity {
    this.table.checkRemote(spec.ip);
    const identity = this.allocator.allocate(identityRelevant(this.table.remoteLabelsOf(spec)));
    const old = this.table.setRemote({ spec, identity });
    this.policyCache.markChanged(this.cache.upsertIdentity(identity));
    if (old) this.releaseIdentity(old.identity.id);
    const remoteNamedPorts = [spec, old?.spec].some((x) => (x?.namedPorts?.length ?? 0) > 0);
    if (remoteNamedPorts) this.policyCache.markNamedPortUsers(); // egress rules naming a port resolve it here too
    this.bump();
    return identity;
  }

  /** Forgets a remote endpoint's address; false when it was not known. */
  deleteRemoteEndpoint(ip: string): boolean {
    const old = this.table.deleteRemote(ip);
    if (!old) return false;
    this.releaseIdentity(old.identity.id);
    if ((old.spec.namedPorts?.length ?? 0) > 0) this.policyCache.markNamedPortUsers();
    this.bump();
    return true;
  }

  /** The remote endpoints known, with their identities. */
  remoteEndpoints(): RemoteEndpoint[] {
    return [...this.table.remoteValues()];
  }

  private releaseIdentity(id: number): void {
    this.allocator.release(id);
    if (!this.allocator.get(id)) this.policyCache.markChanged(this.cache.removeIdentity(id));
  }

  upsertService(spec: ServiceSpec): void {
    const svc = resolveService(spec);
    this.services.set(`${spec.namespace}/${spec.name}`, svc);
    this.serviceSpecs.set(`${spec.namespace}/${spec.name}`, spec);
    this.syncOutside();
    this.policyCache.markChanged(this.cache.refreshAll());
    this.bump();
  }

  /** Forgets a service (toServices rules naming it then select nothing); false when it was not known. */
  deleteService(namespace: string, name: string): boolean {
    const key = `${namespace}/${name}`;
    this.serviceSpecs.delete(key);
    if (!this.services.delete(key)) return false;
    this.syncOutside();
    this.policyCache.markChanged(this.cache.refreshAll());
    this.bump();
    return true;
  }

  /** `labels`: a remote node's labels (node-addresses.ts); throws LABEL_INVALID, changing nothing. */
  setNodeAddress(ip: string, kind: NodeAddressKind, labels?: Readonly<Record<string, string>>): void {
    this.nodeAddrs.set(ip, labels === undefined ? { kind } : { kind, labels });
    this.bump();
  }

  /** Forgets a node address (an endpoint's entry for it is left alone); false when it was not known. */
  deleteNodeAddress(ip: string): boolean {
    if (!this.nodeAddrs.delete(ip)) return false;
    this.bump();
    return true;
  }

  /** DNS answers the node's DNS proxy let through: their addresses get FQDN identities. */
  observeDns(answer: DnsAnswer): void {
    this.outside.learn(normalizeName(answer.name), answer.ips);
    this.outside.syncAddresses(answer.ips);
    this.bump();
  }

  /** Whether the node's DNS proxy sees `by`'s lookup of `name` (and may learn from it): dns-visibility.ts. */
  dnsLookupSeen(by: { readonly namespace: string; readonly name: string }, name: string): boolean {
    return proxySeesLookup(this.endpointPolicy(by.namespace, by.name).egress, normalizeName(name));
  }

  /** A DNS-learned address expired for `name`: it no longer carries that name's FQDN identity. */
  forgetDns(name: string, ip: string): void {
    if (!this.outside.forget(normalizeName(name), ip)) return;
    this.outside.syncAddresses([ip]);
    this.bump();
  }

  private syncOutside(): void {
    this.outside.sync(this.repo.values(), this.services.values());
  }

  // ---- policies ----------------------------------------------------------

  upsertPolicy(res: PolicyResource): void {
    this.rulesChanged(this.repo.upsert(res));
  }

  deletePolicy(ref: PolicyRef): boolean {
    const old = this.repo.delete(ref);
    if (!old) return false;
    this.rulesChanged(old);
    return true;
  }

  listPolicies(): readonly PolicyResource[] {
    return this.repo.list();
  }

  getPolicy(ref: PolicyRef): PolicyResource | undefined {
    return this.repo.get(ref);
  }

  private rulesChanged(touched: readonly Rule[]): void {
    // Subjects of old and new rules must recompute.
    for (const r of touched) {
      const key = this.cache.add({ kind: "endpoints", selector: r.subject });
      this.policyCache.staleFor(this.cache.selections(key));
      this.cache.remove(key);
    }
    this.syncOutside();
    this.bump();
  }

  /** Rules selecting an identity as subject, in repository order. */
  rulesSelecting(identity: number): Rule[] {
    return this.repo.rulesSelecting(identity);
  }

  // ---- computed policy ---------------------------------------------------

  private bump(): void {
    this.rev++;
  }

  private resolveContext(): ResolveContext {
    return {
      config: this.config,
      cache: this.cache,
      namedPortsOf: (id) => this.table.namedPortsOf(id),
      isAudit: (rule) => this.repo.auditRules().has(rule),
      identitiesWithNamedPorts: () => this.table.identitiesWithNamedPorts(),
    };
  }

  /** The endpoint's computed policy (recomputed when a change touched it). */
  endpointPolicy(namespace: string, name: string): EndpointPolicy {
    const key = `${namespace}/${name}`;
    const ep = this.table.get(key);
    if (!ep)
      throw new MembraneError("ENDPOINT_NOT_FOUND", `Cannot compute policy for ${key}: no such endpoint`);
    const ports = ep.spec.namedPorts ?? [];
    const sp = this.policyCache.get(key, policySignature(ep.identity.id, ports), () => {
      const ctx = this.resolveContext();
      const selecting = this.repo.rulesSelecting(ep.identity.id);
      const subject = { identity: ep.identity, namedPorts: ports };
      const ingress = resolveDirection(ctx, subject, selecting, "ingress");
      const egress = resolveDirection(ctx, subject, selecting, "egress");
      return { identity: ep.identity.id, ingress, egress, revision: this.rev };
    });
    return { endpoint: ep, ingress: sp.ingress, egress: sp.egress, revision: sp.revision };
  }

  /** Recomputes every endpoint a change touched (the dirty ones, no walk); returns their keys. */
  regenerate(): string[] {
    this.repo.rules();
    const todo = this.policyCache.dirtyKeys().filter((k) => this.table.get(k) !== undefined);
    for (const k of todo) {
      const ep = this.table.get(k) as EndpointRecord;
      this.endpointPolicy(ep.spec.namespace, ep.spec.name);
    }
    this.regenerated += todo.length;
    return todo;
  }

  /** Work counters, and the revision of endpointChangesSince: host address changes move none. */
  get stats(): EngineStats {
    const { computations, revision } = this.policyCache;
    return {
      selectorPolicies: computations,
      endpointsRegenerated: this.regenerated,
      endpointRevision: revision,
    };
  }

  /** Local endpoints whose record or computed policy changed after `revision` (undefined: take all). */
  endpointChangesSince(revision: number): Set<string> | undefined {
    return this.policyCache.changesSince(revision);
  }

  /** The host's own ingress policy (host firewall rules), for traffic to the node. */
  hostPolicy(): HostPolicy {
    const host = this.allocator.get(ID.host) as Identity;
    return hostPolicyOf(this.resolveContext(), this.repo.hostRules(this.config.nodeLabels), host);
  }

  listEndpoints(): readonly EndpointRecord[] {
    return [...this.table.locals()];
  }

  getEndpoint(namespace: string, name: string): EndpointRecord | undefined {
    return this.table.get(`${namespace}/${name}`);
  }

  /** Every endpoint (local and remote) as a pod, and which changed: services' backends (lb/). */
  get pods(): PodSource { return this.table.pods; } // prettier-ignore

  identity(id: number): Identity | undefined {
    return this.cache.identity(id) ?? this.allocator.get(id);
  }

  /** Changes whenever the set of identities changes (the agent persists them only then). */
  get identityRevision(): number {
    return this.cache.identityRevision;
  }

  get identityCount(): number { return this.cache.identityCount; } // prettier-ignore

  identities(): Iterable<Identity> {
    return this.cache.allIdentities();
  }

  /** An independent engine with the same inputs: for "what if" questions that must not touch this one. */
  fork(): PolicyEngine {
    const f = new PolicyEngine({ config: this.config });
    for (const [name, labels] of this.table.namespaceEntries()) f.setNamespace(name, labels);
    for (const s of this.serviceSpecs.values()) f.upsertService(s);
    for (const [ip, a] of this.nodeAddrs.entries()) f.setNodeAddress(ip, a.kind, a.labels);
    for (const [ip, names] of this.outside.learned())
      for (const name of names) f.observeDns({ name, ips: [ip] });
    for (const ep of this.table.locals()) f.upsertEndpoint(ep.spec);
    for (const r of this.table.remoteValues()) f.upsertRemoteEndpoint(r.spec);
    for (const p of this.repo.values()) f.upsertPolicy(p);
    return f;
  }

  // ---- questions ---------------------------------------------------------

  resolvePeer(p: PeerRef): ResolvedPeer {
    return resolvePeerIn(
      { table: this.table, ipcache: this.ipcache, identity: (id) => this.identity(id) },
      p,
    );
  }

  decide(q: FlowQuery): Decision {
    this.repo.rules();
    return decideFlow(this, q);
  }

  trace(q: FlowQuery): TraceResult {
    this.repo.rules();
    return explainFlow(this, q);
  }
}
