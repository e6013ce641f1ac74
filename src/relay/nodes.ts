/**
 * The nodes of the cluster and where their Observer APIs are, read from the
 * cluster store (`cluster/nodes/<node>`, NodeRecordV1.hubble), for the relay.
 *
 *   etcd cluster/nodes/ --list + watch from rev+1--> ClusterNodes --(name, PeerAddress | undefined)--> PeerPool
 *                      watch error --> list again (backoff), watch again
 *
 * Records are untrusted input: one that does not parse is skipped (logged).
 * The relay only reads; it holds no lease and writes nothing.
 * Which address: TCP+TLS when the record has one and the relay has a CA for
 * the agents (--peer-tls-ca); else the unix socket (an agent on this host, as
 * in the lab); else the node is listed as unreachable, with the reason.
 */
import { isAbsolute } from "node:path";
import type { Logger } from "pino";
import { CLUSTER_KEYS, type NodeRecordV1 } from "../cluster/keys.js";
import { parseNodeRecord } from "../cluster/registry.js";
import type { EtcdStore } from "../store/etcd.js";
import { followPrefix } from "../store/follow-prefix.js";
import type { Unsubscribe } from "../store/store.js";
import type { PeerAddress } from "./peer.js";
import type { NodeSource } from "./pool.js";

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** A node record's Observer API address for a relay that has (or lacks) TLS to the agents. */
export function peerAddressOf(r: NodeRecordV1, tls: boolean): PeerAddress {
  const h = r.hubble;
  const address = typeof h?.address === "string" && HOST_PORT.test(h.address) ? h.address : undefined;
  const socket = typeof h?.socket === "string" && isAbsolute(h.socket) ? h.socket : undefined;
  if (address !== undefined && tls) return { name: r.name, target: address, tls: true };
  if (socket !== undefined) return { name: r.name, target: `unix:${socket}`, tls: false };
  const why =
    address !== undefined
      ? `the node serves its Observer API on ${address} with TLS: give the relay --peer-tls-ca`
      : "the node's record names no Observer API (an agent with --no-flows, or older than the relay)";
  return { name: r.name, target: address ?? "", tls: address !== undefined, unusable: why };
}

export interface ClusterNodesParams {
  readonly kv: EtcdStore;
  /** The relay has TLS settings for the agents' TCP listeners. */
  readonly tls: boolean;
  readonly logger: Logger;
}

export class ClusterNodes implements NodeSource {
  private readonly live = new Map<string, PeerAddress>();
  private readonly listeners = new Set<(name: string, a: PeerAddress | undefined) => void>();
  private unwatch: Unsubscribe | undefined;
  private stopped = false;
  private relisting = false;

  constructor(private readonly p: ClusterNodesParams) {}

  list(): ReadonlyMap<string, PeerAddress> {
    return this.live;
  }

  on(f: (name: string, a: PeerAddress | undefined) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  /** Lists the nodes (fails with the store's error when it cannot) and watches them until stop(). */
  async start(): Promise<void> {
    await this.relist();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const u = this.unwatch;
    this.unwatch = undefined;
    await u?.().catch(() => undefined);
    this.listeners.clear();
  }

  private async relist(): Promise<void> {
    const old = this.unwatch;
    this.unwatch = undefined;
    await old?.().catch(() => undefined);
    this.unwatch = await followPrefix(this.p.kv, CLUSTER_KEYS.nodes, {
      put: (name, value) => this.apply(name, value),
      remove: (name) => this.remove(name),
      known: () => this.live.keys(),
      stopped: () => this.stopped,
      onError: (err) => void this.retry(err),
    });
  }

  private async retry(err: Error): Promise<void> {
    if (this.stopped || this.relisting) return;
    this.relisting = true;
    this.p.logger.warn({ err: err.message }, "node watch failed; listing the nodes again");
    for (let delay = 200; !this.stopped; delay = Math.min(delay * 2, 5000)) {
      try {
        await this.relist();
        break;
      } catch (e) {
        this.p.logger.warn({ err: (e as Error).message }, "cannot list the nodes; retrying");
        await new Promise((r) => setTimeout(r, delay).unref());
      }
    }
    this.relisting = false;
  }

  private apply(name: string, value: string): void {
    const rec = parseNodeRecord(name, value);
    if (!rec) {
      this.p.logger.warn({ key: CLUSTER_KEYS.nodes + name }, "ignoring an invalid node record");
      return;
    }
    const a = peerAddressOf(rec, this.p.tls);
    const before = this.live.get(name);
    if (before && JSON.stringify(before) === JSON.stringify(a)) return;
    this.live.set(name, a);
    for (const l of this.listeners) l(name, a);
  }

  private remove(name: string): void {
    if (!this.live.delete(name)) return;
    for (const l of this.listeners) l(name, undefined);
  }
}

/** A fixed list of nodes (`membrane relay --peer name=unix:/path`, benchmarks). */
export class StaticNodes implements NodeSource {
  private readonly map: ReadonlyMap<string, PeerAddress>;
  constructor(peers: readonly PeerAddress[]) {
    this.map = new Map(peers.map((p) => [p.name, p]));
  }
  list(): ReadonlyMap<string, PeerAddress> {
    return this.map;
  }
  on(): () => void {
    return () => undefined;
  }
}
