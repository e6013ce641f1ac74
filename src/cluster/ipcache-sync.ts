/**
 * The cluster ipcache, receiving side: every other node's endpoints
 * (`cluster/ipcache/<node>/<ip>`) and node addresses become the local
 * agent's remote endpoints and node addresses, so that a packet from a pod
 * on another node is judged by its sender's identity.
 *
 *   ipcache/* --PrefixMirror--> dirty keys --+
 *   NodeView (nodes/, podcidrs/) ------------+--> apply: remote endpoints upsert/delete (bulk, one enforce each)
 *                                                        node addresses: peers -> remote-node, this node -> host
 *
 * An entry counts only when its address is inside a pod CIDR its publishing
 * node owns (pod-cidrs.ts): one node cannot claim another's pods through the
 * store. Ignored entries are logged once. A node whose lease expires loses
 * its keys in etcd; the watch sees the deletes and its endpoints go here too.
 *
 * In cluster mode this owns the agent's remote endpoints and `remote-node`
 * addresses: the first pass after a start removes the ones etcd no longer has.
 */
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import { addrString, containsAddr, parseAddr } from "../labels/cidr.js";
import { workloadLabels } from "../labels/k8s.js";
import type { RemoteEndpointSpec } from "../policy/query.js";
import type { Store } from "../store/store.js";
import type { ClusterContext } from "./context.js";
import { CLUSTER_KEYS, splitNodeKey, type IpcacheEntryV1 } from "./keys.js";
import { PrefixMirror } from "./mirror.js";
import type { NodeSnapshot, NodeView } from "./node-view.js";
import { NodeAddressSync, type NodeAddressSink } from "./node-addresses.js";

/** Entries per remote endpoints request (the controller takes up to 10,000). */
const REQUEST_MAX = 5000;
const NS_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export interface IpcacheSink extends NodeAddressSink {
  readonly remoteEndpoints: {
    upsert(entries: readonly RemoteEndpointSpec[]): Promise<unknown>;
    delete(ips: readonly string[]): Promise<unknown>;
    list(): readonly RemoteEndpointSpec[];
  };
}

/** The key of a spec, for "did it change". */
const specKey = (s: RemoteEndpointSpec): string =>
  JSON.stringify([s.namespace, Object.entries(s.labels).sort(), s.serviceAccount ?? null]);

export class IpcacheReceiver {
  private readonly mirror: PrefixMirror;
  private readonly nodeAddrs: NodeAddressSync;
  /** canonical ip -> keys that name it. */
  private readonly byIp = new Map<string, Set<string>>();
  /** What the agent holds: ip -> specKey (initialised from its remote endpoints at start). */
  private readonly applied = new Map<string, string>();
  private readonly dirty = new Set<string>();
  private allDirty = true;
  private running: Promise<void> | undefined;
  private again = false;
  private started = false;
  private retry: NodeJS.Timeout | undefined;
  private readonly reported = new Set<string>();
  lastError: string | undefined;

  constructor(
    private readonly ctx: ClusterContext,
    private readonly view: NodeView,
    private readonly sink: IpcacheSink,
    private readonly logger: Logger,
    localStore: Store | undefined,
    private readonly retryMs = 2000,
  ) {
    this.mirror = new PrefixMirror(ctx.kv, CLUSTER_KEYS.ipcache, logger, (keys) => {
      for (const k of keys) this.dirty.add(k);
      void this.trigger();
    });
    this.nodeAddrs = new NodeAddressSync(ctx.node, sink, logger, localStore);
    view.onChange((snap) => {
      this.nodesChanged(snap);
      void this.trigger();
    });
  }

  /** Per node, what its entries are judged by (registered? owned CIDRs): a change re-judges its entries only. */
  private readonly nodeSigs = new Map<string, string>();
  /** Nodes whose entries must be judged again on the next pass. */
  private readonly dirtyNodes = new Set<string>();

  /**
   * A registry change: the entries of nodes whose registration or owned pod CIDRs changed are
   * judged again (this node's own CIDRs bound everyone's entries: a change of them re-judges all).
   */
  private nodesChanged(snap: NodeSnapshot): void {
    const names = new Set([...this.nodeSigs.keys(), ...snap.records.keys()]);
    for (const name of names) {
      const owned = snap.owned.get(name);
      const sig = owned === undefined ? "" : JSON.stringify(owned.map((p) => `${p.addr}/${p.bits}`));
      if ((this.nodeSigs.get(name) ?? "") === sig) continue;
      if (sig === "") this.nodeSigs.delete(name);
      else this.nodeSigs.set(name, sig);
      if (name === this.ctx.node) this.allDirty = true;
      else this.dirtyNodes.add(name);
    }
  }

  /** Remote endpoints known from the cluster (ip -> spec key). */
  get size(): number {
    return this.applied.size;
  }

  async start(): Promise<void> {
    for (const s of this.sink.remoteEndpoints.list()) this.applied.set(s.ip, specKey(s));
    await this.mirror.start();
    this.started = true;
    await this.trigger();
  }

  async stop(): Promise<void> {
    this.started = false;
    if (this.retry) clearTimeout(this.retry);
    await this.mirror.stop();
    await this.running;
  }

  /** Applies what changed (and again if more changed meanwhile); resolves when done. */
  trigger(): Promise<void> {
    if (!this.started) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        // Let a burst of watch events (one txn) arrive first.
        await new Promise((r) => setImmediate(r));
        await this.passOnce();
      } while (this.again && this.started);
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  private report(key: string, why: string): void {
    const k = `${key}: ${why}`;
    if (this.reported.has(k)) return;
    if (this.reported.size > 10_000) this.reported.clear();
    this.reported.add(k);
    this.logger.warn({ key, why }, "ignored a cluster ipcache entry");
  }

  /** The spec `key` asks for, or undefined (and logged) when it does not count. */
  private entryOf(key: string, snap: NodeSnapshot): RemoteEndpointSpec | undefined {
    const e = this.mirror.entries.get(key);
    const k = splitNodeKey(CLUSTER_KEYS.ipcache, key);
    if (!e || !k || k.node === this.ctx.node) return undefined;
    const a = parseAddr(k.rest);
    if (!a) return void this.report(key, "not an address");
    const ip = addrString(a.family, a.value);
    const owned = snap.owned.get(k.node);
    // Not (yet) registered: its entries may arrive before its record; judged again when it registers.
    if (!owned) return undefined;
    if (!owned.some((p) => containsAddr(p, ip)))
      return void this.report(key, `${ip} is outside the pod CIDRs node ${k.node} owns`);
    const mine = snap.owned.get(this.ctx.node) ?? [];
    if (mine.some((p) => containsAddr(p, ip)))
      return void this.report(key, `${ip} is in this node's pod CIDRs`);
    let v: IpcacheEntryV1;
    try {
      v = JSON.parse(e.value) as IpcacheEntryV1;
      if (typeof v !== "object" || v === null || v.v !== 1) throw new Error("not an IpcacheEntryV1");
      if (typeof v.namespace !== "string" || !NS_RE.test(v.namespace))
        throw new Error("namespace is not a name");
      if (typeof v.labels !== "object" || v.labels === null || Array.isArray(v.labels))
        throw new Error("labels is not a map");
      if (Object.keys(v.labels).length > 256) throw new Error("more than 256 labels");
      if (v.ports !== undefined && (!Array.isArray(v.ports) || v.ports.length > 64))
        throw new Error("ports is not a list of at most 64 named ports");
      workloadLabels({ namespace: v.namespace, labels: v.labels });
    } catch (err) {
      return void this.report(key, err instanceof Error ? err.message : String(err));
    }
    // The named ports are checked with the rest of the entry by the remote endpoints controller.
    const ports = v.ports?.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol }));
    return {
      ip,
      namespace: v.namespace,
      labels: { ...v.labels },
      ...(ports && ports.length > 0 ? { namedPorts: ports } : {}),
    };
  }

  private async passOnce(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    try {
      await this.apply();
      this.lastError = undefined;
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
      this.logger.error({ err: this.lastError }, "applying the cluster ipcache failed; retrying");
      this.allDirty = true;
      if (this.started) (this.retry = setTimeout(() => void this.trigger(), this.retryMs)).unref();
    }
  }

  private async apply(): Promise<void> {
    await this.nodeAddrs.apply(this.view.snapshot, this.ctx.nodeIp);
    // The snapshot as it is after that await: nodes that registered meanwhile were marked dirty
    // (nodesChanged) and are cleared below, so their entries must be judged against it, not
    // against the one before the await (they were skipped as "not registered" and never judged again).
    const snap = this.view.snapshot;
    // The addresses whose answer may have changed.
    const ips = new Set<string>();
    const keys = this.allDirty ? [...this.mirror.entries.keys(), ...this.dirty] : [...this.dirty];
    if (this.allDirty) for (const ip of this.applied.keys()) ips.add(ip);
    else if (this.dirtyNodes.size > 0) {
      for (const key of this.mirror.entries.keys()) {
        const k = splitNodeKey(CLUSTER_KEYS.ipcache, key);
        if (k && this.dirtyNodes.has(k.node)) keys.push(key);
      }
    }
    this.allDirty = false;
    this.dirtyNodes.clear();
    this.dirty.clear();
    for (const key of keys) {
      const a = parseAddr(splitNodeKey(CLUSTER_KEYS.ipcache, key)?.rest ?? "");
      if (!a) continue;
      const ip = addrString(a.family, a.value);
      ips.add(ip);
      const set = this.byIp.get(ip) ?? new Set<string>();
      if (this.mirror.entries.has(key)) set.add(key);
      else set.delete(key);
      if (set.size > 0) this.byIp.set(ip, set);
      else this.byIp.delete(ip);
    }
    const upserts: RemoteEndpointSpec[] = [];
    const deletes: string[] = [];
    for (const ip of ips) {
      let spec: RemoteEndpointSpec | undefined;
      for (const key of [...(this.byIp.get(ip) ?? [])].sort()) {
        spec = this.entryOf(key, snap);
        if (spec) break;
      }
      if (spec) {
        if (this.applied.get(ip) !== specKey(spec)) upserts.push(spec);
      } else if (this.applied.has(ip)) deletes.push(ip);
    }
    // Make before break: new and changed endpoints first.
    for (let i = 0; i < upserts.length; i += REQUEST_MAX)
      await this.upsert(upserts.slice(i, i + REQUEST_MAX));
    for (let i = 0; i < deletes.length; i += REQUEST_MAX) {
      const chunk = deletes.slice(i, i + REQUEST_MAX);
      await this.sink.remoteEndpoints.delete(chunk);
      for (const ip of chunk) this.applied.delete(ip);
    }
  }

  /** Upserts `specs`; one the agent refuses (named by its index) is logged and left out, the rest go in. */
  private async upsert(specs: RemoteEndpointSpec[]): Promise<void> {
    for (;;) {
      if (specs.length === 0) return;
      try {
        await this.sink.remoteEndpoints.upsert(specs);
        for (const s of specs) this.applied.set(s.ip, specKey(s));
        return;
      } catch (e) {
        const m = e instanceof MembraneError ? /^endpoints\[(\d+)\]/.exec(e.location?.path ?? "") : null;
        const i = m ? Number(m[1]) : -1;
        const bad = specs[i];
        if (!bad) throw e;
        this.report(`${bad.ip}`, `refused by the agent: ${(e as Error).message}`);
        specs = specs.filter((_, j) => j !== i);
      }
    }
  }
}
