/**
 * The relay's view of every node: which agents it can reach now.
 *
 *   NodeSource (cluster store) --upsert/delete--> PeerPool --Peer per node
 *   every healthMs: ServerStatus (deadline) per peer --ok--> connected | --error--> unavailable
 *   a GetFlows stream that breaks --markUnavailable--> unavailable (checked again at once)
 *   on(change): {name, state: connected | unavailable | gone, message}
 *
 * A node is "gone" when its record leaves the store (its lease expired or it
 * was removed); "unavailable" while it has a record but its API does not answer.
 */
import { status } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { Peer, type Json, type PeerAddress, type PeerTls } from "./peer.js";

export type PeerState = "connected" | "unavailable" | "gone";

export interface PeerChange {
  readonly name: string;
  readonly state: PeerState;
  readonly message: string;
}

/** The nodes and where their Observer APIs are (the cluster store, or a fixed list). */
export interface NodeSource {
  /** Every node known now. */
  list(): ReadonlyMap<string, PeerAddress>;
  /** Called on every change after list(); returns an unsubscribe. */
  on(f: (name: string, address: PeerAddress | undefined) => void): () => void;
}

export interface PeerPoolParams {
  readonly nodes: NodeSource;
  readonly tls?: PeerTls;
  /** How often each node's API is checked (default 1000 ms). */
  readonly healthMs?: number;
  readonly logger?: Logger;
}

export interface PeerView {
  readonly name: string;
  readonly address: PeerAddress;
  readonly state: PeerState;
  readonly message: string;
  /** The agent's last ServerStatus answer (protojson, proto names). */
  readonly status: Json | undefined;
}

interface Entry {
  peer: Peer | undefined;
  address: PeerAddress;
  state: PeerState;
  message: string;
  status: Json | undefined;
  /** The check under way. */
  checking: Promise<void> | undefined;
  /** Checks in a row that timed out (a loaded agent is slow, not gone). */
  slow: number;
}

export class PeerPool {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(c: PeerChange) => void>();
  private timer: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;
  private readonly healthMs: number;

  constructor(private readonly p: PeerPoolParams) {
    this.healthMs = p.healthMs ?? 1000;
  }

  /** Connects to every known node and waits for the first check of each. */
  async start(): Promise<void> {
    for (const [name, a] of this.p.nodes.list()) this.upsert(name, a);
    this.unwatch = this.p.nodes.on((name, a) => (a === undefined ? this.remove(name) : this.upsert(name, a)));
    this.timer = setInterval(() => this.checkAll(), this.healthMs);
    this.timer.unref();
    await Promise.all([...this.entries.keys()].map((n) => this.check(n)));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.unwatch?.();
    for (const e of this.entries.values()) e.peer?.close();
    this.entries.clear();
    this.listeners.clear();
  }

  on(f: (c: PeerChange) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  peers(): PeerView[] {
    return [...this.entries.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, e]) => ({
        name,
        address: e.address,
        state: e.state,
        message: e.message,
        status: e.status,
      }));
  }

  /** The peer's connection, when it is connected. */
  connected(name: string): Peer | undefined {
    const e = this.entries.get(name);
    return e?.state === "connected" ? e.peer : undefined;
  }

  /** A stream of the node broke: it is unavailable until a check answers again (started now). */
  markUnavailable(name: string, why: string): void {
    const e = this.entries.get(name);
    if (e === undefined) return;
    this.set(name, e, "unavailable", why);
    void this.check(name);
  }

  private upsert(name: string, a: PeerAddress): void {
    const old = this.entries.get(name);
    if (old && old.address.target === a.target && old.address.unusable === a.unusable) return;
    old?.peer?.close();
    let peer: Peer | undefined;
    let why = a.unusable ?? "connecting";
    if (a.unusable === undefined) {
      try {
        peer = new Peer(a, this.p.tls);
      } catch (e) {
        why = (e as Error).message;
      }
    }
    const entry: Entry = {
      peer,
      address: a,
      state: "unavailable",
      message: why,
      status: undefined,
      checking: undefined,
      slow: 0,
    };
    this.entries.set(name, entry);
    if (old?.state === "connected") this.emit({ name, state: "unavailable", message: "its address changed" });
    if (peer !== undefined) void this.check(name);
    else this.p.logger?.warn({ node: name, why }, "cannot reach this node's Observer API");
  }

  private remove(name: string): void {
    const e = this.entries.get(name);
    if (e === undefined) return;
    e.peer?.close();
    this.entries.delete(name);
    this.emit({ name, state: "gone", message: "the node left the cluster store" });
  }

  private checkAll(): void {
    for (const name of this.entries.keys()) void this.check(name);
  }

  private check(name: string): Promise<void> {
    const e = this.entries.get(name);
    if (e === undefined || e.peer === undefined) return Promise.resolve();
    e.checking ??= this.runCheck(name, e, e.peer);
    return e.checking;
  }

  private async runCheck(name: string, e: Entry, peer: Peer): Promise<void> {
    try {
      const status = await peer.serverStatus(Math.max(3000, 3 * this.healthMs));
      if (this.entries.get(name) !== e) return;
      e.status = status;
      e.slow = 0;
      this.set(name, e, "connected", "");
    } catch (err) {
      if (this.entries.get(name) !== e) return;
      const why = (err as { details?: string }).details ?? (err as Error).message;
      // A check that only timed out leaves a connected node connected until three in a row did:
      // a busy agent answers late; a dead one refuses the connection (UNAVAILABLE) at once.
      if (
        (err as { code?: number }).code === status.DEADLINE_EXCEEDED &&
        e.state === "connected" &&
        ++e.slow < 3
      )
        return;
      this.set(name, e, "unavailable", why);
    } finally {
      e.checking = undefined;
    }
  }

  private set(name: string, e: Entry, state: PeerState, message: string): void {
    const changed = e.state !== state;
    e.state = state;
    e.message = message;
    if (!changed) return;
    this.p.logger?.info({ node: name, state, why: message }, "node's Observer API changed state");
    this.emit({ name, state, message });
  }

  private emit(c: PeerChange): void {
    for (const l of this.listeners) l(c);
  }
}
