/**
 * EndpointTable: the workloads the engine knows and the addresses they own.
 * Local endpoints get a computed policy; remote endpoints (of other nodes)
 * only give their address the identity of their labels. Both inherit the
 * labels of their namespace.
 *
 *   EndpointSpec / RemoteEndpointSpec + namespace labels --labelsOf--> LabelSet
 *                      |
 *                      v
 *   address -> owner (local or remote, never both) --> ipcache exact entries ("endpoint")
 *                      |
 *                      +--> find(name), byAddress(ip), named ports per identity
 *
 * Checks come before changes: `check*` and `labelsOf` throw on bad input,
 * and only then does the engine allocate identities and call `set*`.
 */
import type { Identity } from "../identity/allocator.js";
import type { IPCache } from "../ipcache/ipcache.js";
import { parseAddr } from "../labels/cidr.js";
import { workloadLabels } from "../labels/k8s.js";
import { LabelSet } from "../labels/label.js";
import { MembraneError } from "../errors.js";
import type { EndpointRecord } from "./engine-types.js";
import type { EndpointSpec, NamedPort, RemoteEndpointSpec } from "./query.js";
import { PodJournal, type PodSource, type PodView } from "./pod-journal.js";

export interface RemoteEndpoint {
  readonly spec: RemoteEndpointSpec;
  readonly identity: Identity;
}

export class EndpointTable {
  private readonly namespaces = new Map<string, Readonly<Record<string, string>>>();
  private readonly endpoints = new Map<string, EndpointRecord>();
  /** endpoint address -> namespace/name */
  private readonly ipOwner = new Map<string, string>();
  /** Endpoints of other nodes: address -> their spec and identity (ipcache only, no computed policy). */
  private readonly remotes = new Map<string, RemoteEndpoint>();
  private readonly journal = new PodJournal();

  constructor(private readonly p: { readonly ipcache: IPCache; readonly cluster: string }) {}

  setNamespace(name: string, labels: Readonly<Record<string, string>>): void {
    this.namespaces.set(name, { ...labels });
  }

  namespaceEntries(): Iterable<[string, Readonly<Record<string, string>>]> {
    return this.namespaces;
  }

  /** Every label of a local endpoint, derived ones included (throws on invalid labels). */
  labelsOf(spec: EndpointSpec): LabelSet {
    if (spec.kind === "health") return LabelSet.from([{ source: "reserved", key: "health", value: "" }]);
    return this.workloadLabels(spec);
  }

  /** Every label of a remote endpoint, derived ones included (throws on invalid labels). */
  remoteLabelsOf(spec: RemoteEndpointSpec): LabelSet {
    return this.workloadLabels(spec);
  }

  private workloadLabels(spec: EndpointSpec | RemoteEndpointSpec): LabelSet {
    return workloadLabels({
      namespace: spec.namespace,
      labels: spec.labels,
      namespaceLabels: this.namespaces.get(spec.namespace) ?? {},
      cluster: this.p.cluster,
      ...(spec.serviceAccount !== undefined ? { serviceAccount: spec.serviceAccount } : {}),
    });
  }

  /** Throws unless every address of local endpoint `key` is valid and free (or already its own). */
  checkLocal(key: string, ips: readonly string[]): void {
    for (const ip of ips) {
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
      this.refuseNodeAddress(ip, `Cannot add endpoint ${key}`);
      const owner = this.ipOwner.get(ip);
      if (owner !== undefined && owner !== key) {
        throw new MembraneError(
          "ENDPOINT_INVALID",
          `Cannot add endpoint ${key}: ${ip} already belongs to ${owner}`,
        );
      }
    }
  }

  /** Throws unless a remote endpoint may take this address. */
  checkRemote(ip: string): void {
    if (!parseAddr(ip)) {
      throw new MembraneError("ENDPOINT_INVALID", `Cannot add remote endpoint: "${ip}" is not an IP address`);
    }
    this.refuseNodeAddress(ip, `Cannot add remote endpoint ${ip}`);
    const owner = this.ipOwner.get(ip);
    if (owner !== undefined) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot add remote endpoint ${ip}: the address belongs to local endpoint ${owner}`,
      );
    }
  }

  /**
   * A node's address (host, remote-node, kube-apiserver) keeps its reserved identity:
   * an endpoint registered on it would give the node a workload's identity in the
   * ipcache, and deleting that endpoint would leave the node's address as world.
   */
  private refuseNodeAddress(ip: string, what: string): void {
    if (this.p.ipcache.lookup(ip).entry?.source === "node") {
      throw new MembraneError("ENDPOINT_INVALID", `${what}: ${ip} is a node's address`);
    }
  }

  /** Stores a local endpoint and moves its addresses to it; returns the record it replaced. */
  setLocal(rec: EndpointRecord): EndpointRecord | undefined {
    const old = this.endpoints.get(rec.key);
    this.endpoints.set(rec.key, rec);
    this.journal.note(`l:${rec.key}`);
    for (const ip of old?.spec.ips ?? []) {
      this.p.ipcache.deleteExact(ip);
      this.ipOwner.delete(ip);
    }
    for (const ip of rec.spec.ips) {
      this.p.ipcache.setExact(ip, rec.identity.id, "endpoint");
      this.ipOwner.set(ip, rec.key);
    }
    return old;
  }

  /** Forgets a local endpoint and its addresses; returns it, or undefined when unknown. */
  deleteLocal(key: string): EndpointRecord | undefined {
    const old = this.endpoints.get(key);
    if (!old) return undefined;
    this.endpoints.delete(key);
    this.journal.note(`l:${key}`);
    for (const ip of old.spec.ips) {
      this.p.ipcache.deleteExact(ip);
      this.ipOwner.delete(ip);
    }
    return old;
  }

  /** Stores a remote endpoint's address and identity; returns what it replaced. */
  setRemote(r: RemoteEndpoint): RemoteEndpoint | undefined {
    const old = this.remotes.get(r.spec.ip);
    this.remotes.set(r.spec.ip, r);
    this.journal.note(`r:${r.spec.ip}`);
    this.p.ipcache.setExact(r.spec.ip, r.identity.id, "endpoint");
    return old;
  }

  /** Forgets a remote endpoint's address; returns it, or undefined when unknown. */
  deleteRemote(ip: string): RemoteEndpoint | undefined {
    const old = this.remotes.get(ip);
    if (!old) return undefined;
    this.remotes.delete(ip);
    this.journal.note(`r:${ip}`);
    this.p.ipcache.deleteExact(ip);
    return old;
  }

  /** Local and remote endpoints as pods, and which changed (the services' backends follow them). */
  readonly pods: PodSource = ((journal: PodJournal): PodSource => ({
    get: (key) => {
      if (key.startsWith("r:")) {
        const r = this.remotes.get(key.slice(2));
        return r && { ...r.spec, ips: [r.spec.ip] };
      }
      return this.endpoints.get(key.slice(2))?.spec;
    },
    all: () => this.allPods(),
    since: (cursor) => journal.since(cursor),
    get head() {
      return journal.head;
    },
  }))(this.journal);

  private *allPods(): Generator<[string, PodView]> {
    for (const [key, e] of this.endpoints) yield [`l:${key}`, e.spec];
    for (const [ip, r] of this.remotes) yield [`r:${ip}`, { ...r.spec, ips: [ip] }];
  }

  get(key: string): EndpointRecord | undefined {
    return this.endpoints.get(key);
  }

  keys(): IterableIterator<string> {
    return this.endpoints.keys();
  }

  locals(): IterableIterator<EndpointRecord> {
    return this.endpoints.values();
  }

  remoteValues(): IterableIterator<RemoteEndpoint> {
    return this.remotes.values();
  }

  /** The local endpoint owning an address. */
  byAddress(ip: string): EndpointRecord | undefined {
    const owner = this.ipOwner.get(ip);
    return owner === undefined ? undefined : this.endpoints.get(owner);
  }

  /** The one local endpoint called `name` (in `namespace` when given); throws when none or several. */
  find(name: string, namespace: string | undefined): EndpointRecord {
    const matches = [...this.endpoints.values()].filter(
      (e) => e.spec.name === name && (namespace === undefined || e.spec.namespace === namespace),
    );
    if (matches.length !== 1) {
      throw new MembraneError(
        "QUERY_INVALID",
        matches.length === 0
          ? `Cannot find endpoint "${namespace ? namespace + "/" : ""}${name}"`
          : `Cannot tell which endpoint "${name}" means: ${matches.map((m) => m.key).join(", ")} (write namespace/name)`,
      );
    }
    return matches[0] as EndpointRecord;
  }

  /** The named ports of the endpoints (local and remote) with this identity. */
  namedPortsOf(id: number): NamedPort[] {
    return [...this.endpoints.values(), ...this.remotes.values()]
      .filter((e) => e.identity.id === id)
      .flatMap((e) => e.spec.namedPorts ?? []);
  }

  /** Identities of the endpoints (local and remote) that have named ports. */
  identitiesWithNamedPorts(): Set<number> {
    return new Set(
      [...this.endpoints.values(), ...this.remotes.values()]
        .filter((e) => (e.spec.namedPorts?.length ?? 0) > 0)
        .map((e) => e.identity.id),
    );
  }
}
