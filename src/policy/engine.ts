/**
 * PolicyEngine: the pure policy core, end to end.
 *
 *   namespaces, endpoints, services, nodes, DNS answers        policies (PolicyResource)
 *            |                                                        |
 *            v                                                        v
 *   labels -> identities -> ipcache, SelectorCache  <----  Repository (rules, revision)
 *                                  |
 *                                  v
 *             per-endpoint DirectionPolicy (MapState, ingress + egress)
 *                                  |
 *            decide(FlowQuery) / trace(FlowQuery) / endpointPolicy() for the datapath
 *
 * No I/O, no clocks: the agent feeds it and reads desired state from it; the
 * CLI feeds it from scenario files. Every change bumps `revision`; computed
 * policies are recomputed only for the endpoints a change can affect.
 */
import { IdentityAllocator, type Identity, type IdentityAllocatorLike } from "../identity/allocator.js";
import { ID } from "../identity/reserved.js";
import { IPCache } from "../ipcache/ipcache.js";
import { hostPrefix, parseAddr, parsePrefix, prefixString, type Prefix } from "../labels/cidr.js";
import { identityRelevant, POD_NAMESPACE_LABEL, workloadLabels } from "../labels/k8s.js";
import { LabelSet, type Label } from "../labels/label.js";
import { Selector } from "../labels/selector.js";
import { MembraneError } from "../errors.js";
import { normalizeName } from "./l7/fqdn.js";
import { decideFlow, explainFlow } from "./decide.js";
import type { ResolvedService } from "./peer.js";
import { SelectorCache } from "./selectorcache.js";
import { proxySeesLookup } from "./dns-visibility.js";
import { resolveDirection, type DirectionPolicy, type ResolveContext } from "./resolve.js";
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

interface SharedPolicy {
  readonly identity: number;
  readonly ingress: DirectionPolicy;
  readonly egress: DirectionPolicy;
  readonly revision: number;
  stale: boolean;
  readonly holders: Set<string>;
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

export class PolicyEngine {
  readonly config: EngineConfig;
  private readonly allocator: IdentityAllocatorLike;
  private readonly services = new Map<string, ResolvedService>();
  private readonly serviceSpecs = new Map<string, ServiceSpec>();
  readonly cache: SelectorCache;
  readonly ipcache: IPCache;
  private readonly namespaces = new Map<string, Readonly<Record<string, string>>>();
  private readonly endpoints = new Map<string, EndpointRecord>();
  private readonly policies = new Map<string, PolicyResource>();
  private rulesCache: Rule[] | undefined;
  private readonly subjectKeys = new Map<Rule, string>();
  /**
   * SelectorPolicy per (identity, own named ports): endpoints with the same
   * labels share one computation (Cilium's SelectorPolicy).
   */
  private readonly selectorPolicies = new Map<string, SharedPolicy>();
  /** Endpoint key -> the SelectorPolicy signature it uses. */
  private readonly endpointSig = new Map<string, string>();
  /** Endpoints whose policy may have changed since the last regenerate(). */
  private readonly dirty = new Set<string>();
  /** ip -> names it answered for */
  private readonly dnsNames = new Map<string, Set<string>>();
  /** prefix text -> outside identity */
  private readonly outside = new Map<string, Identity>();
  private readonly outsideSignature = new Map<string, string>();
  private readonly nodeAddrs = new Map<string, number>();
  /** endpoint address -> namespace/name */
  private readonly ipOwner = new Map<string, string>();
  /** Endpoints of other nodes: address -> their spec and identity (ipcache only, no computed policy). */
  private readonly remotes = new Map<string, { spec: RemoteEndpointSpec; identity: Identity }>();
  private rev = 1;

  constructor(params: { config?: Partial<EngineConfig>; allocator?: IdentityAllocatorLike } = {}) {
    this.config = { ...DEFAULT_ENGINE_CONFIG, ...(params.config ?? {}) };
    if (this.config.policyCIDRMatchMode !== "") {
      throw new MembraneError(
        "CONFIG_INVALID",
        `Cannot use policyCIDRMatchMode "${this.config.policyCIDRMatchMode}": only "" (CIDR rules never select nodes or pods) is supported`,
      );
    }
    this.allocator = params.allocator ?? new IdentityAllocator();
    this.cache = new SelectorCache({ cluster: this.config.cluster, services: this.services });
    this.ipcache = new IPCache(this.config.dualStack);
    for (const id of [
      ID.host,
      ID.world,
      ID.unmanaged,
      ID.health,
      ID.init,
      ID.remoteNode,
      ID.kubeApiserver,
      ID.ingress,
    ]) {
      const ident = this.allocator.get(id);
      if (ident) this.cache.upsertIdentity(ident);
    }
    if (this.config.dualStack) {
      for (const id of [ID.worldIPv4, ID.worldIPv6]) {
        const ident = this.allocator.get(id);
        if (ident) this.cache.upsertIdentity(ident);
      }
    }
  }

  get revision(): number {
    return this.rev;
  }

  // ---- world state -------------------------------------------------------

  setNamespace(name: string, labels: Readonly<Record<string, string>>): void {
    this.namespaces.set(name, { ...labels });
    for (const ep of [...this.endpoints.values()])
      if (ep.spec.namespace === name) this.upsertEndpoint(ep.spec);
    for (const r of [...this.remotes.values()])
      if (r.spec.namespace === name) this.upsertRemoteEndpoint(r.spec);
    this.bump();
  }

  upsertEndpoint(spec: EndpointSpec): Identity {
    const key = `${spec.namespace}/${spec.name}`;
    for (const ip of spec.ips) {
      if (!parseAddr(ip)) {
        throw new MembraneError(
          "ENDPOINT_INVALID",
          `Cannot add endpoint ${key}: "${ip}" is not an IP address`,
        );
      }
      if (this.remotes.has(ip)) {
        throw new MembraneError(
          "ENDPOINT_INVALID",
          `Cannot add endpoint ${key}: ${ip} belongs to a remote endpoint`,
        );
      }
      const owner = this.ipOwner.get(ip);
      if (owner !== undefined && owner !== key) {
        throw new MembraneError(
          "ENDPOINT_INVALID",
          `Cannot add endpoint ${key}: ${ip} already belongs to ${owner}`,
        );
      }
    }
    const labels =
      spec.kind === "health"
        ? LabelSet.from([{ source: "reserved", key: "health", value: "" }])
        : workloadLabels({
            namespace: spec.namespace,
            labels: spec.labels,
            namespaceLabels: this.namespaces.get(spec.namespace) ?? {},
            cluster: this.config.cluster,
            ...(spec.serviceAccount !== undefined ? { serviceAccount: spec.serviceAccount } : {}),
          });
    const identity =
      spec.kind === "health"
        ? (this.allocator.get(ID.health) as Identity)
        : this.allocator.allocate(identityRelevant(labels));
    const old = this.endpoints.get(key);
    const rec: EndpointRecord = { key, spec, labels, identity };
    this.endpoints.set(key, rec);
    for (const ip of old?.spec.ips ?? []) {
      this.ipcache.deleteExact(ip);
      this.ipOwner.delete(ip);
    }
    for (const ip of spec.ips) {
      this.ipcache.setExact(ip, identity.id, "endpoint");
      this.ipOwner.set(ip, key);
    }
    // Make-before-break: the new identity is known to every selector before the old one goes.
    this.markChanged(this.cache.upsertIdentity(identity));
    if (old && old.identity.id !== identity.id) this.releaseIdentity(old.identity.id);
    this.dirty.add(key);
    if ((spec.namedPorts?.length ?? 0) > 0 || (old?.spec.namedPorts?.length ?? 0) > 0)
      this.markNamedPortUsers();
    this.bump();
    return identity;
  }

  deleteEndpoint(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const old = this.endpoints.get(key);
    if (!old) return;
    this.endpoints.delete(key);
    this.detach(key);
    this.dirty.delete(key);
    for (const ip of old.spec.ips) {
      this.ipcache.deleteExact(ip);
      this.ipOwner.delete(ip);
    }
    if (old.spec.kind !== "health") this.releaseIdentity(old.identity.id);
    this.bump();
  }

  /**
   * An endpoint of another node: its address gets the identity of its labels
   * (the cluster issue feeds these from the kvstore). Its policy is that node's
   * business: nothing is computed for it here.
   */
  upsertRemoteEndpoint(spec: RemoteEndpointSpec): Identity {
    const a = parseAddr(spec.ip);
    if (!a) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot add remote endpoint: "${spec.ip}" is not an IP address`,
      );
    }
    const owner = this.ipOwner.get(spec.ip);
    if (owner !== undefined) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot add remote endpoint ${spec.ip}: the address belongs to local endpoint ${owner}`,
      );
    }
    const labels = workloadLabels({
      namespace: spec.namespace,
      labels: spec.labels,
      namespaceLabels: this.namespaces.get(spec.namespace) ?? {},
      cluster: this.config.cluster,
      ...(spec.serviceAccount !== undefined ? { serviceAccount: spec.serviceAccount } : {}),
    });
    const identity = this.allocator.allocate(identityRelevant(labels));
    const old = this.remotes.get(spec.ip);
    this.remotes.set(spec.ip, { spec, identity });
    this.ipcache.setExact(spec.ip, identity.id, "endpoint");
    this.markChanged(this.cache.upsertIdentity(identity));
    if (old) this.releaseIdentity(old.identity.id);
    this.bump();
    return identity;
  }

  /** Forgets a remote endpoint's address; false when it was not known. */
  deleteRemoteEndpoint(ip: string): boolean {
    const old = this.remotes.get(ip);
    if (!old) return false;
    this.remotes.delete(ip);
    this.ipcache.deleteExact(ip);
    this.releaseIdentity(old.identity.id);
    this.bump();
    return true;
  }

  /** The remote endpoints known, with their identities. */
  remoteEndpoints(): { spec: RemoteEndpointSpec; identity: Identity }[] {
    return [...this.remotes.values()];
  }

  private releaseIdentity(id: number): void {
    this.allocator.release(id);
    if (!this.allocator.get(id)) this.markChanged(this.cache.removeIdentity(id));
  }

  upsertService(spec: ServiceSpec): void {
    const svc: ResolvedService = {
      name: spec.name,
      namespace: spec.namespace,
      labels: spec.labels ?? {},
      ...(spec.selector
        ? {
            podSelector: Selector.fromLabelSelector({ matchLabels: spec.selector }).and({
              source: "k8s",
              key: POD_NAMESPACE_LABEL,
              operator: "In",
              values: [spec.namespace],
            }),
          }
        : {}),
      prefixes: (spec.ips ?? []).map((ip) => hostPrefix(ip)).filter((p): p is Prefix => p !== undefined),
    };
    this.services.set(`${spec.namespace}/${spec.name}`, svc);
    this.serviceSpecs.set(`${spec.namespace}/${spec.name}`, spec);
    this.syncOutsideIdentities();
    this.markChanged(this.cache.refreshAll());
    this.bump();
  }

  setNodeAddress(ip: string, kind: "host" | "remote-node" | "kube-apiserver"): void {
    const id = kind === "host" ? ID.host : kind === "remote-node" ? ID.remoteNode : ID.kubeApiserver;
    this.nodeAddrs.set(ip, id);
    this.ipcache.setExact(ip, id, "node");
    this.bump();
  }

  /** DNS answers the node's DNS proxy let through: their addresses get FQDN identities. */
  observeDns(answer: DnsAnswer): void {
    const name = normalizeName(answer.name);
    for (const ip of answer.ips) {
      if (!parseAddr(ip)) continue;
      // toFQDNs never selects cluster addresses.
      const known = this.ipcache.lookup(ip).entry;
      if (known && (known.source === "endpoint" || known.source === "node")) continue;
      let names = this.dnsNames.get(ip);
      if (!names) this.dnsNames.set(ip, (names = new Set()));
      names.add(name);
    }
    this.syncOutsideIdentities();
    this.bump();
  }

  /**
   * Whether the node's DNS proxy sees `by`'s lookup of `name` (and so may
   * learn from its answer): see dns-visibility.ts.
   */
  dnsLookupSeen(by: { readonly namespace: string; readonly name: string }, name: string): boolean {
    return proxySeesLookup(this.endpointPolicy(by.namespace, by.name).egress, normalizeName(name));
  }

  /** A DNS-learned address expired for `name`: it no longer carries that name's FQDN identity. */
  forgetDns(name: string, ip: string): void {
    const names = this.dnsNames.get(ip);
    if (!names?.delete(normalizeName(name))) return;
    if (names.size === 0) this.dnsNames.delete(ip);
    this.syncOutsideIdentities();
    this.bump();
  }

  // ---- policies ----------------------------------------------------------

  upsertPolicy(res: PolicyResource): void {
    const k = refKey(res.ref);
    const old = this.policies.get(k);
    this.policies.set(k, res);
    this.rulesChanged([...(old?.rules ?? []), ...res.rules]);
  }

  deletePolicy(ref: PolicyRef): boolean {
    const k = refKey(ref);
    const old = this.policies.get(k);
    if (!old) return false;
    this.policies.delete(k);
    this.rulesChanged(old.rules);
    return true;
  }

  listPolicies(): readonly PolicyResource[] {
    return [...this.policies.values()];
  }

  getPolicy(ref: PolicyRef): PolicyResource | undefined {
    return this.policies.get(refKey(ref));
  }

  private rulesChanged(touched: readonly Rule[]): void {
    // Subjects of old and new rules must recompute.
    for (const r of touched) {
      const key = this.cache.add({ kind: "endpoints", selector: r.subject });
      const sel = this.cache.selections(key);
      for (const sp of this.selectorPolicies.values()) if (sel.has(sp.identity)) this.stale(sp);
      this.cache.remove(key);
    }
    this.rulesCache = undefined;
    this.auditCache = undefined;
    this.syncOutsideIdentities();
    this.bump();
  }

  private rules(): Rule[] {
    if (!this.rulesCache) {
      // Hold the new subject selectors before releasing the old ones, so that
      // unchanged selectors keep their cached selections.
      const old = [...this.subjectKeys.values()];
      this.subjectKeys.clear();
      this.rulesCache = [...this.policies.values()].flatMap((p) => p.rules);
      for (const r of this.rulesCache) {
        if (!r.selectsNodes)
          this.subjectKeys.set(r, this.cache.add({ kind: "endpoints", selector: r.subject }));
      }
      for (const k of old) this.cache.remove(k);
    }
    return this.rulesCache;
  }

  private auditCache: Set<Rule> | undefined;
  /** Rules of policies in audit mode. */
  private auditRules(): Set<Rule> {
    if (!this.auditCache || this.rulesCache === undefined) {
      this.auditCache = new Set([...this.policies.values()].filter((p) => p.audit).flatMap((p) => p.rules));
    }
    return this.auditCache;
  }

  /** Rules selecting an identity as subject, in repository order. */
  rulesSelecting(identity: number): Rule[] {
    return this.rules().filter((r) => {
      const k = this.subjectKeys.get(r);
      return k !== undefined && this.cache.selections(k).has(identity);
    });
  }

  /** Host firewall rules (nodeSelector) selecting this node. */
  private hostRules(): Rule[] {
    const nodeLabels = LabelSet.EMPTY;
    return this.rules().filter((r) => r.selectsNodes && r.subject.matches(nodeLabels));
  }

  // ---- outside identities (CIDR and FQDN) --------------------------------

  /** Keeps one local identity per referenced CIDR prefix and per DNS-learned address. */
  private syncOutsideIdentities(): void {
    // What is wanted: every referenced prefix, with the DNS names of its address.
    const want = new Map<string, { prefix: Prefix; names: string[]; source: "cidr" | "fqdn" }>();
    const add = (p: Prefix, source: "cidr" | "fqdn", names: readonly string[]): void => {
      if (p.bits === 0) return; // 0.0.0.0/0 and ::/0 are the world identity itself
      const text = cachedPrefixText(p);
      const w = want.get(text);
      if (!w) want.set(text, { prefix: p, names: [...names], source });
      else w.names.push(...names);
    };
    for (const p of this.policies.values()) for (const q of referencedPrefixes(p)) add(q, "cidr", []);
    for (const s of this.services.values()) for (const q of s.prefixes) add(q, "cidr", []);
    for (const [ip, names] of this.dnsNames) {
      const p = parsePrefix(ip, true);
      if (p) add(p, "fqdn", [...names]);
    }
    // Allocate new identities first, then retire the old ones (make-before-break).
    const retired: Identity[] = [];
    for (const [text, w] of want) {
      const cur = this.outside.get(text);
      const signature = w.names.sort().join(",");
      if (cur && this.outsideSignature.get(text) === signature) continue;
      this.outsideSignature.set(text, signature);
      const labels: Label[] = [
        { source: "cidr", key: text, value: "" },
        { source: "reserved", key: "world", value: "" },
        ...w.names.map((n) => ({ source: "fqdn", key: n, value: "" })),
      ];
      if (this.config.dualStack) {
        labels.push({
          source: "reserved",
          key: w.prefix.family === 4 ? "world-ipv4" : "world-ipv6",
          value: "",
        });
      }
      const ident = this.allocator.allocateLocal(LabelSet.from(labels), w.prefix);
      this.outside.set(text, ident);
      this.ipcache.setPrefix(w.prefix, ident.id, w.source);
      this.markChanged(this.cache.upsertIdentity(ident));
      if (cur) retired.push(cur);
    }
    for (const [text, cur] of [...this.outside]) {
      if (!want.has(text)) {
        this.outside.delete(text);
        this.outsideSignature.delete(text);
        if (cur.prefix) this.ipcache.deletePrefix(cur.prefix);
        retired.push(cur);
      }
    }
    for (const ident of retired) this.releaseIdentity(ident.id);
  }

  // ---- computed policy ---------------------------------------------------

  private markChanged(selectorKeys: readonly string[]): void {
    if (selectorKeys.length === 0) return;
    const changed = new Set(selectorKeys);
    for (const sp of this.selectorPolicies.values()) {
      if (sp.stale) continue;
      if (
        sp.ingress.selectorKeys.some((k) => changed.has(k)) ||
        sp.egress.selectorKeys.some((k) => changed.has(k))
      ) {
        this.stale(sp);
      }
    }
  }

  private markNamedPortUsers(): void {
    for (const sp of this.selectorPolicies.values()) {
      if (
        sp.egress.rules.some((r) => r.egress.some((e) => e.ports?.some((p) => p.ports.some((pp) => pp.name))))
      ) {
        this.stale(sp);
      }
    }
  }

  private stale(sp: SharedPolicy): void {
    sp.stale = true;
    for (const k of sp.holders) this.dirty.add(k);
  }

  /** Stops an endpoint from using its SelectorPolicy; the last user releases its selectors. */
  private detach(key: string): void {
    const sig = this.endpointSig.get(key);
    if (sig === undefined) return;
    this.endpointSig.delete(key);
    const sp = this.selectorPolicies.get(sig);
    if (!sp) return;
    sp.holders.delete(key);
    if (sp.holders.size === 0) {
      for (const k of [...sp.ingress.selectorKeys, ...sp.egress.selectorKeys]) this.cache.remove(k);
      this.selectorPolicies.delete(sig);
    }
  }

  private bump(): void {
    this.rev++;
  }

  private resolveContext(): ResolveContext {
    return {
      config: this.config,
      cache: this.cache,
      namedPortsOf: (id) =>
        [...this.endpoints.values()]
          .filter((e) => e.identity.id === id)
          .flatMap((e) => e.spec.namedPorts ?? []),
      isAudit: (rule) => this.auditRules().has(rule),
      identitiesWithNamedPorts: () =>
        new Set(
          [...this.endpoints.values()]
            .filter((e) => (e.spec.namedPorts?.length ?? 0) > 0)
            .map((e) => e.identity.id),
        ),
    };
  }

  /** The endpoint's computed policy (recomputed when a change touched it). */
  endpointPolicy(namespace: string, name: string): EndpointPolicy {
    const key = `${namespace}/${name}`;
    const ep = this.endpoints.get(key);
    if (!ep)
      throw new MembraneError("ENDPOINT_NOT_FOUND", `Cannot compute policy for ${key}: no such endpoint`);
    const ports = ep.spec.namedPorts ?? [];
    const sig = `${ep.identity.id}|${ports.map((p) => `${p.name}/${p.protocol}/${p.port}`).join(",")}`;
    if (this.endpointSig.get(key) !== sig) {
      this.detach(key);
      this.endpointSig.set(key, sig);
    }
    let sp = this.selectorPolicies.get(sig);
    if (!sp || sp.stale) {
      const ctx = this.resolveContext();
      const selecting = this.rulesSelecting(ep.identity.id);
      const subject = { identity: ep.identity, namedPorts: ports };
      const ingress = resolveDirection(ctx, subject, selecting, "ingress");
      const egress = resolveDirection(ctx, subject, selecting, "egress");
      // Release the previous selectors only now that the new ones are held (make-before-break).
      if (sp) for (const k of [...sp.ingress.selectorKeys, ...sp.egress.selectorKeys]) this.cache.remove(k);
      const holders: Set<string> = sp?.holders ?? new Set<string>();
      sp = { identity: ep.identity.id, ingress, egress, revision: this.rev, stale: false, holders };
      this.selectorPolicies.set(sig, sp);
    }
    sp.holders.add(key);
    this.dirty.delete(key);
    return { endpoint: ep, ingress: sp.ingress, egress: sp.egress, revision: sp.revision };
  }

  /** Recomputes every endpoint a change touched; returns their keys (namespace/name). */
  regenerate(): string[] {
    this.rules();
    const todo = [...this.endpoints.keys()].filter((k) => this.dirty.has(k) || !this.endpointSig.has(k));
    for (const k of todo) {
      const ep = this.endpoints.get(k) as EndpointRecord;
      this.endpointPolicy(ep.spec.namespace, ep.spec.name);
    }
    return todo;
  }

  /** The host's own ingress policy (host firewall rules), for traffic to the node. */
  hostPolicy(): { ingress: DirectionPolicy; egress: DirectionPolicy } {
    // The host is subject only to host-firewall (nodeSelector) rules: `always`
    // applies to workload endpoints, as in Cilium without the host firewall.
    const base = this.resolveContext();
    const mode = this.config.policyEnforcementMode === "never" ? "never" : "default";
    const ctx: ResolveContext = { ...base, config: { ...this.config, policyEnforcementMode: mode } };
    const selecting = this.hostRules();
    const subject = { identity: this.allocator.get(ID.host) as Identity, namedPorts: [] };
    return {
      ingress: resolveDirection(ctx, subject, selecting, "ingress"),
      egress: resolveDirection(ctx, subject, selecting, "egress"),
    };
  }

  listEndpoints(): readonly EndpointRecord[] {
    return [...this.endpoints.values()];
  }

  getEndpoint(namespace: string, name: string): EndpointRecord | undefined {
    return this.endpoints.get(`${namespace}/${name}`);
  }

  identity(id: number): Identity | undefined {
    return this.cache.identity(id) ?? this.allocator.get(id);
  }

  identities(): Iterable<Identity> {
    return this.cache.allIdentities();
  }

  /**
   * An independent engine with the same inputs (namespaces, services, nodes,
   * DNS answers, endpoints, policies): for "what if" questions that must not
   * touch this one.
   */
  fork(): PolicyEngine {
    const f = new PolicyEngine({ config: this.config });
    for (const [name, labels] of this.namespaces) f.setNamespace(name, labels);
    for (const s of this.serviceSpecs.values()) f.upsertService(s);
    for (const [ip, id] of this.nodeAddrs) {
      f.setNodeAddress(ip, id === ID.host ? "host" : id === ID.remoteNode ? "remote-node" : "kube-apiserver");
    }
    for (const [ip, names] of this.dnsNames) for (const name of names) f.observeDns({ name, ips: [ip] });
    for (const ep of this.endpoints.values()) f.upsertEndpoint(ep.spec);
    for (const r of this.remotes.values()) f.upsertRemoteEndpoint(r.spec);
    for (const p of this.policies.values()) f.upsertPolicy(p);
    return f;
  }

  // ---- questions ---------------------------------------------------------

  resolvePeer(p: PeerRef): ResolvedPeer {
    if (p.kind === "host") return { identity: this.identity(ID.host) as Identity, isHost: true };
    if (p.kind === "endpoint") {
      const matches = [...this.endpoints.values()].filter(
        (e) => e.spec.name === p.name && (p.namespace === undefined || e.spec.namespace === p.namespace),
      );
      if (matches.length !== 1) {
        throw new MembraneError(
          "QUERY_INVALID",
          matches.length === 0
            ? `Cannot find endpoint "${p.namespace ? p.namespace + "/" : ""}${p.name}"`
            : `Cannot tell which endpoint "${p.name}" means: ${matches.map((m) => m.key).join(", ")} (write namespace/name)`,
        );
      }
      const ep = matches[0] as EndpointRecord;
      const out = { identity: ep.identity, endpoint: ep, isHost: false };
      return ep.spec.ips[0] !== undefined ? { ...out, ip: ep.spec.ips[0] } : out;
    }
    if (!parseAddr(p.ip)) throw new MembraneError("QUERY_INVALID", `Cannot use "${p.ip}" as an address`);
    const { identity, entry } = this.ipcache.lookup(p.ip);
    if (entry?.source === "endpoint") {
      const owner = this.ipOwner.get(p.ip);
      const ep = owner === undefined ? undefined : this.endpoints.get(owner);
      if (ep) return { identity: ep.identity, endpoint: ep, isHost: false, ip: p.ip };
    }
    const ident = this.identity(identity) as Identity;
    return { identity: ident, isHost: identity === ID.host, ip: p.ip };
  }

  decide(q: FlowQuery): Decision {
    this.rules();
    return decideFlow(this, q);
  }

  trace(q: FlowQuery): TraceResult {
    this.rules();
    return explainFlow(this, q);
  }
}

function refKey(r: PolicyRef): string {
  return `${r.kind}/${r.namespace ?? ""}/${r.name}`;
}

const prefixTexts = new WeakMap<Prefix, string>();
/** prefixString, memoised per (immutable) Prefix object: policies are re-scanned on every change. */
function cachedPrefixText(p: Prefix): string {
  let t = prefixTexts.get(p);
  if (t === undefined) prefixTexts.set(p, (t = prefixString(p)));
  return t;
}

const prefixesOf = new WeakMap<PolicyResource, readonly Prefix[]>();
/** Every CIDR prefix (allowed or excepted) a policy names, memoised per (immutable) resource. */
function referencedPrefixes(p: PolicyResource): readonly Prefix[] {
  let out = prefixesOf.get(p);
  if (!out) {
    const list: Prefix[] = [];
    for (const r of p.rules) {
      for (const el of [...r.ingress, ...r.ingressDeny, ...r.egress, ...r.egressDeny]) {
        for (const peer of el.peers) if (peer.kind === "cidr") list.push(peer.prefix, ...peer.except);
      }
    }
    prefixesOf.set(p, (out = list));
  }
  return out;
}
