/**
 * The node agent: wiring only.
 *
 *   API (unix socket) --> Agent operations --> Store (durable first)
 *                                  |
 *                                  v
 *                           PolicyEngine (pure) --buildDatapathState--> Reconciler --> nftables
 *                                  |
 *                                  +--> endpoints: netns + veth (datapath/endpoint)
 *
 * Order of every change: validate, persist, compute, enforce in the kernel,
 * and only then create what carries traffic. A new endpoint's policy is in
 * the kernel before its veth exists, so it is never open while its policy is
 * computed (fail closed). Stopping the agent leaves the kernel as it is; a
 * restarted agent rebuilds the same desired state from the store and
 * reconciles without a flush.
 */
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import { Reconciler } from "../datapath/reconcile.js";
import { BypassResetter } from "../datapath/conntrack-flush.js";
import { createEndpoint, createNode, deleteEndpoint, type NodeNetns } from "../datapath/endpoint.js";
import { ip } from "../datapath/exec.js";
import { listNetns } from "../datapath/netns.js";
import { stopNetnsProcesses } from "../datapath/workload.js";
import { IdentityAllocator, type Identity } from "../identity/allocator.js";
import { parseAddr, parsePrefix, prefixString as prefixText } from "../labels/cidr.js";
import { LabelSet } from "../labels/label.js";
import { workloadLabels } from "../labels/k8s.js";
import { parsePolicies } from "../policy/api/index.js";
import { PolicyEngine } from "../policy/engine.js";
import type { EngineConfig, NamedPort, ServiceSpec } from "../policy/query.js";
import type { PolicyRef, PolicyResource } from "../policy/types.js";
import type { Store, TxnOp } from "../store/store.js";
import { buildDatapathState, type LocalEndpoint } from "./desired.js";
import { buildProxySnapshot } from "./proxy-snapshot.js";
import { ProxySupervisor } from "../proxy/runtime/supervisor.js";
import type { DatapathState, ProxyTarget } from "../datapath/types.js";
import { Ipam } from "./ipam.js";
import { KEYS, type EndpointRecordV1 } from "./records.js";
import { encodePolicy, policyKey as refKey, readPolicies } from "./policy-store.js";
import { WorkQueue } from "./work-queue.js";
import { Observer, type ObserverParams } from "./observer.js";
import type { FlowLookup } from "../observe/index.js";
import type { RuleOrigin } from "../policy/types.js";

/** Cilium's default --tofqdns-min-ttl. */
const DEFAULT_DNS_MIN_TTL = 3600;
/** How often expired DNS-learned addresses are looked for. */
const DNS_GC_MS = 5000;

/** Store keys of node addresses (setNodeAddress): `nodes/<ip>` -> {kind}. */
const NODE_ADDRS_KEY = "nodes/";
/** Store keys of services (upsertService): `services/<namespace>/<name>` -> ServiceSpec. */
const SERVICES_KEY = "services/";
/** Operations per store transaction when many keys change at once (etcd's default limit is 128). */
const STORE_TXN_OPS = 128;

export interface AgentParams {
  readonly store: Store;
  readonly logger: Logger;
  /** The node's network namespace; undefined = the namespace the agent runs in. */
  readonly nodeNetns?: string;
  /** Prefix of the endpoint namespaces this agent creates (unique per node). */
  readonly netnsPrefix: string;
  readonly podCidr4: string;
  readonly podCidr6?: string;
  readonly table: string;
  readonly logGroup: number;
  readonly engine: Partial<EngineConfig>;
  /** Periodic resync of the kernel with desired state (ms; 0 = off). */
  readonly resyncMs: number;
  /** The state directory, reported in status so that `endpoint exec` can hide it from workloads. */
  readonly stateDir?: string;
  /**
   * The node's L7 proxy (HTTP, gRPC, Kafka, TLS, DNS with toFQDNs); absent =
   * none: L7 rules are then compiled as drops (fail closed).
   */
  readonly proxy?: {
    readonly gid: number;
    /** User the proxy process drops root for once its sockets are bound; absent = stays root. */
    readonly uid?: number;
    readonly l7Port: number;
    readonly dnsPort: number;
    readonly secretsDir?: string;
    /** Shortest life of a DNS-learned address, in seconds (Cilium's --tofqdns-min-ttl). Default 3600. */
    readonly dnsMinTtlSeconds?: number;
    /** How often expired DNS-learned addresses are looked for (ms). Default 5000. */
    readonly dnsGcIntervalMs?: number;
  };
  /** Flow visibility; absent = no NFLOG reader, no flows. */
  readonly observe?: {
    readonly nodeName: string;
    readonly ringCapacity: number;
    readonly metricsAddress?: string;
    readonly export?: ObserverParams["export"];
  };
}

export interface ApplyReport {
  readonly revision: number;
  readonly policies: readonly {
    kind: string;
    namespace?: string;
    name: string;
    status: "created" | "updated" | "deleted" | "unchanged";
  }[];
  readonly endpointsChanged: number;
  readonly kernelOps: number;
  readonly enforcedMs: number;
}

export class Agent {
  private engineRef: PolicyEngine | undefined;
  readonly reconciler: Reconciler;
  private readonly ipam: Ipam;
  private readonly endpoints = new Map<string, EndpointRecordV1>();
  /** Indexes of `endpoints` for the per-flow lookups; changed only through putEndpoint/dropEndpoint. */
  private readonly endpointById = new Map<number, EndpointRecordV1>();
  private readonly endpointByIp = new Map<string, EndpointRecordV1>();
  /** Store key suffix -> the policy's canonical body (policy-store.ts), as stored. */
  private readonly policyRecords = new Map<string, string>();
  private node: NodeNetns | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastApply = { ops: 0, ms: 0, at: "" };
  /** Rule ids in the kernel's log prefixes -> the rule elements (from the last enforced state). */
  private readonly ruleOrigins = new Map<number, RuleOrigin>();
  private observerRef: Observer | undefined;
  private proxyRef: ProxySupervisor | undefined;
  private dnsTimer: NodeJS.Timeout | undefined;
  private proxyTarget: ProxyTarget | undefined;
  private snapshotVersion = 0;
  private readonly bypass: BypassResetter;

  /** The L7 proxy's process id, while it runs. */
  get proxyPid(): number | undefined {
    return this.proxyRef?.pid;
  }

  /** Flows of this node (undefined when flow visibility is off). */
  get observer(): Observer | undefined {
    return this.observerRef;
  }

  private readonly queue: WorkQueue;

  constructor(private readonly p: AgentParams) {
    this.queue = new WorkQueue(p.logger);
    this.ipam = new Ipam({ store: p.store, ipv4: p.podCidr4, ...(p.podCidr6 ? { ipv6: p.podCidr6 } : {}) });
    this.reconciler = new Reconciler({
      ...(p.nodeNetns !== undefined ? { netns: p.nodeNetns } : {}),
      table: p.table,
      logGroup: p.logGroup,
    });
    this.bypass = new BypassResetter(p.nodeNetns !== undefined ? { nodeNetns: p.nodeNetns } : {});
  }

  private putEndpoint(key: string, rec: EndpointRecordV1): void {
    this.dropEndpoint(key);
    this.endpoints.set(key, rec);
    this.endpointById.set(rec.id, rec);
    this.endpointByIp.set(rec.ipv4, rec);
    if (rec.ipv6) this.endpointByIp.set(rec.ipv6, rec);
  }

  private dropEndpoint(key: string): void {
    const old = this.endpoints.get(key);
    if (!old) return;
    this.endpoints.delete(key);
    this.endpointById.delete(old.id);
    this.endpointByIp.delete(old.ipv4);
    if (old.ipv6) this.endpointByIp.delete(old.ipv6);
  }

  /** The policy engine (exists once start() read the identities back). */
  get engine(): PolicyEngine {
    if (!this.engineRef) throw new MembraneError("API_FAILED", "Cannot answer: the agent is still starting");
    return this.engineRef;
  }

  /** Loads state from the store, makes the kernel match it, then serves. */
  async start(): Promise<void> {
    const gw = this.ipam.gateways();
    this.node = await createNode({
      ...(this.p.nodeNetns !== undefined ? { netns: this.p.nodeNetns } : {}),
      gateway4: gw.ipv4,
      podCidr4: this.p.podCidr4,
      ...(gw.ipv6 && this.p.podCidr6 ? { gateway6: gw.ipv6, podCidr6: this.p.podCidr6 } : {}),
    });
    await this.restore();
    if (this.p.observe) {
      this.observerRef = new Observer({
        ...(this.p.nodeNetns !== undefined ? { netns: this.p.nodeNetns } : {}),
        group: this.p.logGroup,
        lookup: this.flowLookup(),
        nodeName: this.p.observe.nodeName,
        ringCapacity: this.p.observe.ringCapacity,
        logger: this.p.logger,
        ...(this.p.observe.metricsAddress ? { metricsAddress: this.p.observe.metricsAddress } : {}),
        ...(this.p.observe.export ? { export: this.p.observe.export } : {}),
      });
      // Before the first enforce: drops from the very first packet are seen.
      await this.observerRef.start();
    }
    if (this.p.proxy) await this.startProxy(this.p.proxy, gw);
    const r = await this.enforce();
    this.p.logger.info(
      { endpoints: this.endpoints.size, policies: this.policyRecords.size, kernelOps: r.ops },
      "agent started",
    );
    // Endpoints whose namespace or veth vanished (e.g. after a reboot) are recreated;
    // intact ones are left alone (one listing each, not one check per endpoint).
    const namespaces = new Set(await listNetns());
    const links = await hostLinks(this.p.nodeNetns);
    const missing = [...this.endpoints.values()].filter(
      (ep) => !namespaces.has(ep.netns) || !links.has(ep.hostIfname),
    );
    // Their policy is already in the kernel (enforce() above): creating them in parallel is safe.
    for (let i = 0; i < missing.length; i += 8) {
      await Promise.all(missing.slice(i, i + 8).map((ep) => createEndpoint(this.endpointNetns(ep))));
    }
    if (this.p.resyncMs > 0) {
      this.timer = setInterval(
        () =>
          void this.serial(() => this.enforce()).catch((e) =>
            this.p.logger.error({ err: String(e) }, "resync failed"),
          ),
        this.p.resyncMs,
      );
      this.timer.unref();
    }
  }

  /** Stops serving; the kernel keeps enforcing what it holds. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.dnsTimer) clearInterval(this.dnsTimer);
    // A long nft transaction is killed, not waited for: the kernel keeps the old
    // state, the store holds what was acknowledged, and the next start reconciles.
    this.reconciler.stop();
    await this.queue.stop();
    await this.proxyRef?.stop();
    await this.observerRef?.stop();
  }

  /**
   * Starts the proxy process in the node's namespace, listening on the node's
   * gateway addresses (the DNAT targets of redirected connections).
   */
  private async startProxy(
    cfg: NonNullable<AgentParams["proxy"]>,
    gw: { ipv4: string; ipv6?: string },
  ): Promise<void> {
    const ipv6 = gw.ipv6 && this.p.podCidr6 ? gw.ipv6 : undefined;
    const config = {
      ipv4: gw.ipv4,
      ...(ipv6 ? { ipv6 } : {}),
      l7Port: cfg.l7Port,
      dnsPort: cfg.dnsPort,
      ...(cfg.secretsDir !== undefined ? { secretsDir: cfg.secretsDir } : {}),
      ...(cfg.uid !== undefined ? { uid: cfg.uid } : {}),
    };
    this.proxyRef = new ProxySupervisor({
      ...(this.p.nodeNetns !== undefined ? { netns: this.p.nodeNetns } : {}),
      gid: cfg.gid,
      config,
      logger: this.p.logger,
      onL7: (event, src, dst) => this.observerRef?.pushL7(event, { src, dst }),
      onDnsAnswer: (_endpoint, name, ips, ttl) => this.dnsAnswer(name, ips, ttl),
    });
    await this.proxyRef.start();
    this.proxyTarget = {
      ipv4: gw.ipv4,
      ...(ipv6 ? { ipv6 } : {}),
      l7Port: cfg.l7Port,
      dnsPort: cfg.dnsPort,
      gid: cfg.gid,
    };
    this.dnsTimer = setInterval(
      () => void this.expireDns().catch((e) => this.p.logger.error({ err: String(e) }, "DNS expiry failed")),
      cfg.dnsGcIntervalMs ?? DNS_GC_MS,
    );
    this.dnsTimer.unref();
  }

  /**
   * A DNS answer the proxy let through: its addresses get FQDN identities
   * and the kernel enforces them before the proxy releases the answer. Each
   * (name, address) lives for max(TTL, minimum TTL); an answer already known
   * only extends that, without touching the kernel.
   */
  private async dnsAnswer(name: string, ips: readonly string[], ttl: number): Promise<void> {
    const key = name.toLowerCase().replace(/\.$/, "");
    const until = Date.now() + Math.max(ttl, this.p.proxy?.dnsMinTtlSeconds ?? DEFAULT_DNS_MIN_TTL) * 1000;
    const fresh = ips.filter((ip) => !this.dnsSeen.get(ip)?.has(key));
    for (const ip of ips) {
      const names = this.dnsSeen.get(ip);
      if (names?.has(key)) names.set(key, Math.max(names.get(key) ?? 0, until));
    }
    if (fresh.length === 0) return;
    // Answers arriving while an enforce runs are batched into the next one: one
    // recompute and one nft transaction for a burst of new names, not one each.
    this.dnsPending.push({ name, key, ips: fresh, until });
    this.dnsFlush ??= this.serial(async () => {
      const batch = this.dnsPending;
      this.dnsPending = [];
      this.dnsFlush = undefined;
      for (const b of batch) this.engine.observeDns({ name: b.name, ips: b.ips });
      await this.enforce();
      for (const b of batch) {
        for (const ip of b.ips) {
          let names = this.dnsSeen.get(ip);
          if (!names) this.dnsSeen.set(ip, (names = new Map()));
          names.set(b.key, Math.max(names.get(b.key) ?? 0, b.until));
        }
      }
    });
    await this.dnsFlush;
  }
  private dnsPending: { name: string; key: string; ips: readonly string[]; until: number }[] = [];
  private dnsFlush: Promise<void> | undefined;
  /**
   * A DNS answer handed over as if the node's DNS proxy had seen it
   * (`policy test --datapath`, when the scratch node cannot route the
   * lookup to the scenario's resolver): treated as the proxy's answers are;
   * resolves once enforced.
   */
  observeDnsAnswer(name: string, ips: readonly string[], ttl = 0): Promise<void> {
    return this.dnsAnswer(name, ips, ttl);
  }
  /** Forgets DNS-learned addresses of `name` as if they had expired; resolves once enforced. */
  forgetDnsAnswer(name: string, ips: readonly string[]): Promise<void> {
    const key = name.toLowerCase().replace(/\.$/, "");
    return this.serial(async () => {
      for (const ip of ips) {
        const names = this.dnsSeen.get(ip);
        names?.delete(key);
        if (names?.size === 0) this.dnsSeen.delete(ip);
        this.engine.forgetDns(name, ip);
      }
      await this.enforce();
    });
  }
  /** address -> name -> expiry (ms since the epoch) of what DNS answers taught. */
  private readonly dnsSeen = new Map<string, Map<string, number>>();

  /** Forgets expired DNS-learned addresses; new connections to them are then denied until resolved again. */
  private async expireDns(): Promise<void> {
    const now = Date.now();
    const gone: [string, string][] = [];
    for (const [ip, names] of this.dnsSeen)
      for (const [name, until] of names) if (until <= now) gone.push([ip, name]);
    if (gone.length === 0) return;
    await this.serial(async () => {
      for (const [ip, name] of gone) {
        const names = this.dnsSeen.get(ip);
        if ((names?.get(name) ?? Infinity) > Date.now()) continue;
        names?.delete(name);
        if (names?.size === 0) this.dnsSeen.delete(ip);
        this.engine.forgetDns(name, ip);
      }
      await this.enforce();
    });
  }

  /** What flows need to name endpoints, identities and rules. */
  private flowLookup(): FlowLookup {
    // Called per flow event: map lookups only, label strings rendered once per identity.
    const info = (rec: EndpointRecordV1) => {
      const ep = this.engine.getEndpoint(rec.namespace, rec.name);
      return {
        name: rec.name,
        namespace: rec.namespace,
        labels: ep ? identityLabelTexts(ep.identity) : [],
        identity: ep?.identity.id ?? 0,
      };
    };
    return {
      endpointById: (id) => {
        const rec = this.endpointById.get(id);
        return rec ? info(rec) : undefined;
      },
      endpointByIp: (ip) => {
        const rec = this.endpointByIp.get(ip);
        return rec ? { ...info(rec), id: rec.id } : undefined;
      },
      identityById: (id) => {
        const i = this.engine.identity(id);
        return i ? { labels: identityLabelTexts(i) } : undefined;
      },
      ipIdentity: (ip) => this.engine.ipcache.lookup(ip).identity,
      ruleById: (id) => {
        const o = this.ruleOrigins.get(id);
        if (!o) return undefined;
        return {
          policy: {
            kind: o.policy.kind,
            name: o.policy.name,
            ...(o.policy.namespace ? { namespace: o.policy.namespace } : {}),
          },
          path: o.path,
          revision: this.engine.revision,
        };
      },
    };
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    return this.queue.run(f);
  }

  /** serial() for a request: dropped if its client went away (`signal`) before its turn. */
  private request<T>(signal: AbortSignal | undefined, what: string, f: () => Promise<T>): Promise<T> {
    return this.queue.run(f, signal, what);
  }

  private async restore(): Promise<void> {
    // Identities first, so that every label set gets back the number the kernel holds.
    const ids = (await this.p.store.list(KEYS.identities)).kvs.map((kv) => {
      const labels = LabelSet.parse(JSON.parse(kv.value) as string[]);
      const cidr = [...labels].find((l) => l.source === "cidr");
      const prefix = cidr ? parsePrefix(cidr.key) : undefined;
      const ident: Identity = prefix
        ? { id: Number(kv.key.slice(KEYS.identities.length)), labels, prefix }
        : { id: Number(kv.key.slice(KEYS.identities.length)), labels };
      return ident;
    });
    for (const i of ids) this.persistedIds.add(i.id);
    this.engineRef = new PolicyEngine({
      config: this.p.engine,
      allocator: new IdentityAllocator({ restore: ids }),
    });
    for (const kv of (await this.p.store.list(KEYS.namespaces)).kvs) {
      this.engine.setNamespace(
        kv.key.slice(KEYS.namespaces.length),
        JSON.parse(kv.value) as Record<string, string>,
      );
    }
    for (const kv of (await this.p.store.list(SERVICES_KEY)).kvs) {
      this.engine.upsertService(JSON.parse(kv.value) as ServiceSpec);
    }
    for (const kv of (await this.p.store.list(NODE_ADDRS_KEY)).kvs) {
      const { kind } = JSON.parse(kv.value) as { kind: "remote-node" | "kube-apiserver" };
      this.engine.setNodeAddress(kv.key.slice(NODE_ADDRS_KEY.length), kind);
    }
    for (const kv of (await this.p.store.list(KEYS.endpoints)).kvs) {
      const rec = JSON.parse(kv.value) as EndpointRecordV1;
      this.putEndpoint(epKey(rec.namespace, rec.name), rec);
      this.engine.upsertEndpoint(engineSpec(rec));
    }
    const stored = readPolicies((await this.p.store.list(KEYS.policies)).kvs, {
      meshAuth: this.engine.config.meshAuth,
      logger: this.p.logger,
    });
    for (let i = 0; i < stored.migrate.length; i += STORE_TXN_OPS) {
      await this.p.store.txn({ compare: [], ops: stored.migrate.slice(i, i + STORE_TXN_OPS) });
    }
    if (stored.migrate.length > 0)
      this.p.logger.info({ policies: stored.migrate.length }, "policy records rewritten as V2");
    for (const { key, res, body } of stored.policies) {
      this.policyRecords.set(key, body);
      this.engine.upsertPolicy(res);
    }
  }

  /** True from the start of an enforce until one succeeds: the kernel may lag the engine. */
  private kernelBehind = false;

  /** Recomputes, persists new identities, and makes the kernel hold the result. */
  private async enforce(): Promise<{ ops: number; ms: number; endpointsChanged: number }> {
    this.kernelBehind = true;
    const changed = this.engine.regenerate();
    await this.persistIdentities();
    const origins = new Map<number, RuleOrigin>();
    const desired = this.desiredState(origins);
    // The proxy holds the L7 rules before the kernel redirects a connection to them.
    if (this.proxyRef)
      await this.proxyRef.push(buildProxySnapshot(this.engine, desired, ++this.snapshotVersion));
    const r = await this.reconciler.apply(desired);
    // Connections established before a new redirect covers them would bypass the proxy: reset them.
    await this.bypass
      .afterApply(desired, (id) => this.endpointById.get(id)?.netns)
      .then(
        (b) =>
          b.connections > 0 && this.p.logger.info(b, "reset connections that bypassed a new L7 redirect"),
      )
      .catch((e: unknown) =>
        this.p.logger.error({ err: String(e) }, "resetting bypassing connections failed"),
      );
    // Realized: only now that the kernel holds the new rule ids do flows name them.
    this.ruleOrigins.clear();
    for (const [id, o] of origins) this.ruleOrigins.set(id, o);
    this.kernelBehind = false;
    this.lastApply = { ops: r.ops, ms: r.ms, at: new Date().toISOString() };
    const m = this.observerRef?.metrics;
    if (m) {
      m.setEndpoints(this.endpoints.size);
      m.setIdentities([...this.engine.identities()].length);
      m.setPolicyRevision(this.engine.revision);
      if (r.ops > 0) m.observeNftTransaction(r.ms / 1000);
    }
    return { ops: r.ops, ms: r.ms, endpointsChanged: changed.length };
  }

  /** What the kernel should hold now (the engine must be regenerated). */
  private desiredState(origins?: Map<number, RuleOrigin>): DatapathState {
    return buildDatapathState(
      this.engine,
      [...this.endpoints.values()].map(localEndpoint),
      { authAvailable: false, ...(this.proxyTarget ? { proxy: this.proxyTarget } : {}) },
      origins,
    );
  }

  private persistedIds = new Set<number>();
  /** New and gone identities, in transactions of STORE_TXN_OPS (one durable write each, not one per identity). */
  private async persistIdentities(): Promise<void> {
    const live = new Map<number, Identity>();
    for (const i of this.engine.identities()) if (i.id >= 256) live.set(i.id, i);
    const ops: TxnOp[] = [];
    for (const [id, i] of live) {
      if (!this.persistedIds.has(id)) {
        const labels = [...i.labels].map((l) => `${l.source}:${l.key}${l.value ? "=" + l.value : ""}`);
        ops.push({ type: "put", key: KEYS.identities + id, value: JSON.stringify(labels) });
      }
    }
    for (const id of this.persistedIds) {
      if (!live.has(id)) ops.push({ type: "delete", key: KEYS.identities + id });
    }
    for (let i = 0; i < ops.length; i += STORE_TXN_OPS) {
      const part = ops.slice(i, i + STORE_TXN_OPS);
      await this.p.store.txn({ compare: [], ops: part });
      for (const op of part) {
        const id = Number(op.key.slice(KEYS.identities.length));
        if (op.type === "put") this.persistedIds.add(id);
        else this.persistedIds.delete(id);
      }
    }
  }

  // ---- policies ----------------------------------------------------------

  /**
   * Validates the whole file first: a rejected file changes nothing. A policy
   * whose normalised form is what the store holds is "unchanged": no store
   * write, no recompute, no kernel change, no new revision. The store write
   * is durable before the answer. `signal`: the client went away (dropped if
   * still queued).
   */
  async applyPolicies(text: string, file: string, signal?: AbortSignal): Promise<ApplyReport> {
    return this.applyPolicyResources(
      parsePolicies(text, file, { meshAuth: this.engine.config.meshAuth }),
      file,
      signal,
    );
  }

  /** Applies policies already parsed and validated (the API parses them off the event loop). */
  applyPolicyResources(
    resources: readonly PolicyResource[],
    file: string,
    signal?: AbortSignal,
  ): Promise<ApplyReport> {
    return this.request(signal, `apply ${file}`, async () => {
      const t0 = performance.now();
      const statuses: ApplyReport["policies"][number][] = [];
      const changed: { key: string; res: PolicyResource; body: string }[] = [];
      const ops: TxnOp[] = [];
      for (const res of resources) {
        const key = refKey(res.ref);
        const old = this.policyRecords.get(key);
        const enc = encodePolicy(res);
        const status = old === undefined ? "created" : old === enc.body ? "unchanged" : "updated";
        statuses.push({ ...refOut(res.ref), status });
        if (status === "unchanged") continue;
        changed.push({ key, res, body: enc.body });
        ops.push({ type: "put", key: KEYS.policies + key, value: enc.value });
      }
      if (ops.length > 0) await this.p.store.txn({ compare: [], ops });
      for (const c of changed) {
        this.policyRecords.set(c.key, c.body);
        this.engine.upsertPolicy(c.res);
      }
      // Nothing new, and the kernel holds what the engine computed: no work at all.
      const r =
        changed.length > 0 || this.kernelBehind
          ? await this.enforce().catch(storedNotEnforced)
          : { ops: 0, endpointsChanged: 0 };
      return {
        revision: this.engine.revision,
        policies: statuses,
        endpointsChanged: r.endpointsChanged,
        kernelOps: r.ops,
        enforcedMs: Math.round(performance.now() - t0),
      };
    });
  }

  async deletePolicies(text: string, file: string, signal?: AbortSignal): Promise<ApplyReport> {
    const refs = parsePolicies(text, file, { meshAuth: this.engine.config.meshAuth }).map((r) => r.ref);
    return this.deletePolicyRefs(refs, file, signal);
  }

  /** Deletes the named policies, all or none. */
  deletePolicyRefs(refs: readonly PolicyRef[], file: string, signal?: AbortSignal): Promise<ApplyReport> {
    return this.request(signal, `delete the policies of ${file}`, async () => {
      const t0 = performance.now();
      const missing = refs.filter((r) => !this.policyRecords.has(refKey(r)));
      if (missing.length > 0) {
        throw new MembraneError(
          "POLICY_NOT_FOUND",
          `Cannot delete ${missing.map(refText).join(", ")}: not applied`,
          {
            hint: "`membrane get policies` lists what is applied.",
          },
        );
      }
      await this.p.store.txn({
        compare: [],
        ops: refs.map((r) => ({ type: "delete" as const, key: KEYS.policies + refKey(r) })),
      });
      for (const r of refs) {
        this.policyRecords.delete(refKey(r));
        this.engine.deletePolicy(r);
      }
      const r = await this.enforce().catch(storedNotEnforced);
      return {
        revision: this.engine.revision,
        policies: refs.map((x) => ({ ...refOut(x), status: "deleted" as const })),
        endpointsChanged: r.endpointsChanged,
        kernelOps: r.ops,
        enforcedMs: Math.round(performance.now() - t0),
      };
    });
  }

  listPolicies(): {
    kind: string;
    namespace?: string;
    name: string;
    rules: number;
    audit: boolean;
    selects: number;
  }[] {
    return this.engine.listPolicies().map((p: PolicyResource) => ({
      ...refOut(p.ref),
      rules: p.rules.length,
      audit: p.audit,
      selects: this.engine
        .listEndpoints()
        .filter((e) => this.engine.rulesSelecting(e.identity.id).some((r) => p.rules.includes(r))).length,
    }));
  }

  // ---- endpoints ---------------------------------------------------------

  /**
   * Creates an endpoint. `ipv4` / `ipv6` ask for exact addresses from the pod
   * CIDRs (e.g. a scenario's addresses); without them IPAM picks.
   */
  createEndpointRequest(req: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    ipv4?: string;
    ipv6?: string;
    /** Named container ports, for policies that name ports. */
    ports?: readonly NamedPort[];
  }): Promise<EndpointView> {
    return this.serial(async () => {
      validateName(req.name, "endpoint name");
      validateName(req.namespace, "namespace");
      const key = epKey(req.namespace, req.name);
      if (this.endpoints.has(key)) {
        throw new MembraneError("ENDPOINT_INVALID", `Cannot create endpoint ${key}: it exists`, {
          hint: "Use `membrane endpoint label` to change its labels.",
        });
      }
      workloadLabels({ namespace: req.namespace, labels: req.labels }); // validates, throws LABEL_INVALID
      validatePorts(req.ports ?? []);
      const id = this.nextEndpointId();
      const addr = await this.ipam.allocate(key, {
        ...(req.ipv4 !== undefined ? { ipv4: req.ipv4 } : {}),
        ...(req.ipv6 !== undefined ? { ipv6: req.ipv6 } : {}),
      });
      const rec: EndpointRecordV1 = {
        v: 1,
        name: req.name,
        namespace: req.namespace,
        labels: req.labels,
        id,
        netns: `${this.p.netnsPrefix}ep${id}`,
        hostIfname: `mbr${id}`,
        ipv4: addr.ipv4,
        ...(addr.ipv6 ? { ipv6: addr.ipv6 } : {}),
        ...(req.ports && req.ports.length > 0 ? { ports: req.ports.map((p) => ({ ...p })) } : {}),
      };
      try {
        await this.p.store.put(KEYS.endpoints + key, JSON.stringify(rec));
        this.putEndpoint(key, rec);
        this.engine.upsertEndpoint(engineSpec(rec));
        // Policy in the kernel first, then the veth: never open while being computed.
        await this.enforce();
        await createEndpoint(this.endpointNetns(rec));
      } catch (e) {
        this.dropEndpoint(key);
        this.engine.deleteEndpoint(rec.namespace, rec.name);
        await this.p.store.delete(KEYS.endpoints + key).catch(() => undefined);
        await this.ipam.release(key).catch(() => undefined);
        await deleteEndpoint(this.endpointNetns(rec)).catch(() => undefined);
        await this.enforce().catch(() => undefined);
        throw e;
      }
      return this.view(rec);
    });
  }

  labelEndpoint(
    namespace: string,
    name: string,
    labels: Record<string, string>,
    replace: boolean,
  ): Promise<EndpointView> {
    return this.serial(async () => {
      const rec = this.mustEndpoint(namespace, name);
      const next: Record<string, string> = replace ? { ...labels } : { ...rec.labels, ...labels };
      for (const [k, v] of Object.entries(next)) if (v === "") delete next[k]; // k= removes a label
      workloadLabels({ namespace, labels: next });
      const updated: EndpointRecordV1 = { ...rec, labels: next };
      await this.p.store.put(KEYS.endpoints + epKey(namespace, name), JSON.stringify(updated));
      this.putEndpoint(epKey(namespace, name), updated);
      this.engine.upsertEndpoint(engineSpec(updated));
      await this.enforce();
      return this.view(updated);
    });
  }

  /** Stops the endpoint's processes (SIGTERM, `graceMs`, SIGKILL) and deletes it; says how many it stopped. */
  async deleteEndpointRequest(namespace: string, name: string, graceMs = 0): Promise<{ stopped: number }> {
    // The grace period runs outside the serial section: a workload slow to exit holds up no other request.
    const early = await stopNetnsProcesses(this.mustEndpoint(namespace, name).netns, graceMs);
    return this.serial(async () => {
      const rec = this.mustEndpoint(namespace, name);
      const late = await deleteEndpoint(this.endpointNetns(rec));
      await this.p.store.delete(KEYS.endpoints + epKey(namespace, name));
      this.dropEndpoint(epKey(namespace, name));
      this.engine.deleteEndpoint(namespace, name);
      await this.enforce();
      await this.ipam.release(epKey(namespace, name));
      return { stopped: early + late };
    });
  }

  setNamespaceLabels(name: string, labels: Record<string, string>): Promise<void> {
    return this.serial(async () => {
      validateName(name, "namespace");
      for (const k of Object.keys(labels))
        workloadLabels({ namespace: name, labels: { [k]: labels[k] ?? "" } });
      await this.p.store.put(KEYS.namespaces + name, JSON.stringify(labels));
      this.engine.setNamespace(name, labels);
      await this.enforce();
    });
  }

  /**
   * Tells the engine that `ip` is another node (`remote-node`) or an API server
   * backend (`kube-apiserver`), so policies on those entities apply to it.
   * Persisted under `nodes/<ip>` and restored on start.
   */
  setNodeAddress(ip: string, kind: "remote-node" | "kube-apiserver"): Promise<void> {
    return this.serial(async () => {
      if (parseAddr(ip) === undefined) {
        throw new MembraneError(
          "ENDPOINT_INVALID",
          `Cannot register node address "${ip}": not an IP address`,
        );
      }
      await this.p.store.put(NODE_ADDRS_KEY + ip, JSON.stringify({ kind }));
      this.engine.setNodeAddress(ip, kind);
      await this.enforce();
    });
  }

  /**
   * A service, for toServices rules: with a pod selector its backends are the
   * pods it selects; without one, its `ips` (outside addresses). Persisted.
   */
  upsertService(spec: ServiceSpec): Promise<void> {
    return this.serial(async () => {
      validateName(spec.name, "service name");
      validateName(spec.namespace, "namespace");
      for (const ip of spec.ips ?? []) {
        if (parseAddr(ip) === undefined) {
          throw new MembraneError(
            "ENDPOINT_INVALID",
            `Cannot add service ${spec.namespace}/${spec.name}: "${ip}" is not an IP address`,
          );
        }
      }
      if (spec.selector) workloadLabels({ namespace: spec.namespace, labels: spec.selector });
      await this.p.store.put(`${SERVICES_KEY}${spec.namespace}/${spec.name}`, JSON.stringify(spec));
      this.engine.upsertService(spec);
      await this.enforce();
    });
  }

  listEndpoints(): EndpointView[] {
    return [...this.endpoints.values()].map((r) => this.view(r));
  }

  getEndpoint(namespace: string, name: string): EndpointView {
    return this.view(this.mustEndpoint(namespace, name));
  }

  private mustEndpoint(namespace: string, name: string): EndpointRecordV1 {
    const rec = this.endpoints.get(epKey(namespace, name));
    if (!rec) {
      throw new MembraneError("ENDPOINT_NOT_FOUND", `Cannot find endpoint ${namespace}/${name}`, {
        hint: "`membrane get endpoints` lists them.",
      });
    }
    return rec;
  }

  private view(rec: EndpointRecordV1): EndpointView {
    const pol = this.engine.endpointPolicy(rec.namespace, rec.name);
    return {
      name: rec.name,
      namespace: rec.namespace,
      id: rec.id,
      identity: pol.endpoint.identity.id,
      labels: rec.labels,
      ipv4: rec.ipv4,
      ...(rec.ipv6 ? { ipv6: rec.ipv6 } : {}),
      netns: rec.netns,
      hostIfname: rec.hostIfname,
      ingress: { enforced: pol.ingress.enforced, entries: pol.ingress.mapState.size },
      egress: { enforced: pol.egress.enforced, entries: pol.egress.mapState.size },
      policyRevision: pol.revision,
    };
  }

  private nextEndpointId(): number {
    const used = this.endpointById;
    for (let i = 1; i < 65535; i++) if (!used.has(i)) return i;
    throw new MembraneError(
      "ENDPOINT_INVALID",
      "Cannot create an endpoint: 65534 endpoints exist on this node",
    );
  }

  private endpointNetns(rec: EndpointRecordV1) {
    if (!this.node)
      throw new MembraneError("NETNS_FAILED", "Cannot manage endpoints: the agent has not started");
    return {
      node: this.node,
      name: rec.name,
      netns: rec.netns,
      hostIfname: rec.hostIfname,
      ipv4: rec.ipv4,
      ...(rec.ipv6 ? { ipv6: rec.ipv6 } : {}),
    };
  }

  // ---- views ---------------------------------------------------------------

  identities(): { id: number; labels: string[]; endpoints: string[] }[] {
    const eps = [...this.endpoints.values()];
    return [...this.engine.identities()]
      .map((i) => ({
        id: i.id,
        labels: [...i.labels].map((l) => `${l.source}:${l.key}${l.value ? "=" + l.value : ""}`),
        endpoints: eps
          .filter((e) => this.engine.getEndpoint(e.namespace, e.name)?.identity.id === i.id)
          .map((e) => epKey(e.namespace, e.name)),
      }))
      .sort((a, b) => a.id - b.id);
  }

  ipcache(): { prefix: string; identity: number; source: string }[] {
    return [...this.engine.ipcache.entries()].map((e) => ({
      prefix: prefixText(e.prefix),
      identity: e.identity,
      source: e.source,
    }));
  }

  async datapathDiff(): Promise<string[]> {
    return this.serial(async () => {
      this.engine.regenerate();
      return this.reconciler.diff(this.desiredState());
    });
  }

  status() {
    return {
      revision: this.engine.revision,
      endpoints: this.endpoints.size,
      policies: this.policyRecords.size,
      identities: [...this.engine.identities()].length,
      nodeNetns: this.p.nodeNetns ?? "(agent's own)",
      ...(this.p.stateDir !== undefined ? { stateDir: this.p.stateDir } : {}),
      table: `inet ${this.p.table}`,
      lastApply: this.lastApply,
    };
  }
}

export interface EndpointView {
  name: string;
  namespace: string;
  id: number;
  identity: number;
  labels: Record<string, string>;
  ipv4: string;
  ipv6?: string;
  netns: string;
  hostIfname: string;
  ingress: { enforced: boolean; entries: number };
  egress: { enforced: boolean; entries: number };
  policyRevision: number;
}

function epKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function refText(r: PolicyRef): string {
  return `${r.kind} ${r.namespace ? r.namespace + "/" : ""}${r.name}`;
}

/** An enforce that failed after the store took the change: say that it is stored, not lost. */
function storedNotEnforced(e: unknown): never {
  if (!(e instanceof MembraneError)) throw e;
  throw new MembraneError(e.code, e.message, {
    cause: e,
    hint: "The change is stored (`membrane get policies` shows it) but the kernel does not hold it yet; the next apply, resync or agent start enforces it.",
  });
}

function refOut(r: PolicyRef): { kind: string; namespace?: string; name: string } {
  return r.namespace !== undefined
    ? { kind: r.kind, namespace: r.namespace, name: r.name }
    : { kind: r.kind, name: r.name };
}

function engineSpec(rec: EndpointRecordV1) {
  return {
    name: rec.name,
    namespace: rec.namespace,
    labels: rec.labels,
    ips: [rec.ipv4, ...(rec.ipv6 ? [rec.ipv6] : [])],
    ...(rec.ports ? { namedPorts: rec.ports } : {}),
  };
}

function localEndpoint(rec: EndpointRecordV1): LocalEndpoint {
  return {
    namespace: rec.namespace,
    name: rec.name,
    id: rec.id,
    hostIfname: rec.hostIfname,
    ipv4: rec.ipv4,
    ...(rec.ipv6 ? { ipv6: rec.ipv6 } : {}),
  };
}

const NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
function validateName(s: string, what: string): void {
  if (typeof s !== "string" || !NAME_RE.test(s)) {
    throw new MembraneError(
      "ENDPOINT_INVALID",
      `Cannot use ${what} "${String(s)}": use 1-63 lower-case letters, digits and "-", starting and ending alphanumeric`,
    );
  }
}

function labelText(l: { source: string; key: string; value: string }): string {
  return `${l.source}:${l.key}${l.value ? "=" + l.value : ""}`;
}

/** Names of the links in the node's namespace. */
async function hostLinks(netns: string | undefined): Promise<Set<string>> {
  const out = await ip(["-o", "link", "show"], netns);
  return new Set(
    out
      .split("\n")
      .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
      .filter((x): x is string => x !== undefined),
  );
}

const PORT_NAME_RE = /^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/;
function validatePorts(ports: readonly NamedPort[]): void {
  const seen = new Set<string>();
  for (const p of ports) {
    const where = `port "${String(p.name)}"`;
    if (typeof p.name !== "string" || !PORT_NAME_RE.test(p.name)) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot use ${where}: a port name is 1-15 of [a-z0-9-] with a letter`,
      );
    }
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot use ${where}: port ${String(p.port)} is not in 1-65535`,
      );
    }
    if (!["TCP", "UDP", "SCTP"].includes(p.protocol)) {
      throw new MembraneError("ENDPOINT_INVALID", `Cannot use ${where}: protocol must be TCP, UDP or SCTP`);
    }
    if (seen.has(`${p.name}/${p.protocol}`))
      throw new MembraneError("ENDPOINT_INVALID", `Cannot use ${where} twice`);
    seen.add(`${p.name}/${p.protocol}`);
  }
}

const labelTexts = new WeakMap<Identity, readonly string[]>();
/** `source:key=value` strings of an (immutable) identity, rendered once. */
function identityLabelTexts(i: Identity): readonly string[] {
  let t = labelTexts.get(i);
  if (!t) labelTexts.set(i, (t = [...i.labels].map(labelText)));
  return t;
}
