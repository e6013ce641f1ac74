/**
 * Node addresses from Kubernetes -> the agent's nodes controller. An address
 * has sources: the Nodes whose status lists it ("node:<name>", other nodes
 * only) and the API server ("apiserver": the default/kubernetes
 * EndpointSlices). A control-plane node's address is often both:
 *
 *   any source "apiserver"   --> setNodeAddress(ip, kube-apiserver)
 *   else a source "node:..." --> setNodeAddress(ip, remote-node)
 *   no source left           --> deleteNodeAddress(ip)
 *
 * The sources of every address given are recorded (owned.ts), so that after
 * a restart the list of Nodes removes only node sources and the list of
 * slices only the API server's: an address deleted while the agent was down
 * goes, and one kept by the other kind does not blink.
 */
import type { Logger } from "pino";
import type { NodeKind } from "../agent/controllers/nodes.js";
import type { Store } from "../store/store.js";
import { Owned } from "./owned.js";
import type { K8sSink } from "./sink.js";

export const APISERVER_SOURCE = "apiserver";

export class NodeAddresses {
  /** ip -> its sources (restored from the record, then kept by the lists and events). */
  private readonly sources = new Map<string, Set<string>>();
  /** What this run told the agent per address. */
  private readonly sent = new Map<string, NodeKind>();
  private readonly owned: Owned;

  constructor(
    private readonly sink: K8sSink,
    private readonly logger: Logger,
    store: Store | undefined,
    nodeName: string,
  ) {
    this.owned = new Owned(store, nodeName, "node-addresses");
  }

  private async load(): Promise<void> {
    await this.owned.load();
    if (this.sources.size > 0) return;
    for (const [ip, v] of this.owned.entries()) this.sources.set(ip, new Set(parseSources(v)));
  }

  /** The addresses of one source now (none: it is gone). */
  async setSource(source: string, ips: readonly string[]): Promise<void> {
    await this.load();
    await this.apply(this.move((s) => s === source, new Map([[source, ips]])));
  }

  /** After a full list: the sources of one kind (`prefix`) are exactly `wanted`. */
  async replaceSources(prefix: string, wanted: ReadonlyMap<string, readonly string[]>): Promise<void> {
    await this.load();
    await this.apply(this.move((s) => s.startsWith(prefix), wanted));
  }

  /** Drops the sources `mine` selects, adds `wanted`; returns the addresses whose sources changed. */
  private move(mine: (s: string) => boolean, wanted: ReadonlyMap<string, readonly string[]>): Set<string> {
    const touched = new Set<string>();
    const want = new Map<string, Set<string>>();
    for (const [src, ips] of wanted)
      for (const ip of ips) (want.get(ip) ?? want.set(ip, new Set()).get(ip))?.add(src);
    for (const [ip, srcs] of this.sources) {
      if (srcs.size === 0) touched.add(ip); // a record without a readable source: forgotten
      for (const s of [...srcs]) {
        if (mine(s) && !want.get(ip)?.has(s)) {
          srcs.delete(s);
          touched.add(ip);
        }
      }
    }
    for (const [ip, srcs] of want) {
      const have = this.sources.get(ip) ?? this.sources.set(ip, new Set()).get(ip);
      for (const s of srcs) {
        if (have?.has(s)) continue;
        have?.add(s);
        touched.add(ip);
      }
      if (!this.sent.has(ip)) touched.add(ip); // not given by this run yet (restored, or refused before)
    }
    return touched;
  }

  private async apply(ips: Iterable<string>): Promise<void> {
    for (const ip of ips) {
      const srcs = this.sources.get(ip) ?? new Set<string>();
      try {
        if (srcs.size === 0) {
          this.sources.delete(ip);
          if (!this.owned.has(ip) && !this.sent.has(ip)) continue;
          await this.sink.deleteNodeAddress(ip);
          this.sent.delete(ip);
          await this.owned.delete([ip]);
          continue;
        }
        const kind: NodeKind = srcs.has(APISERVER_SOURCE) ? "kube-apiserver" : "remote-node";
        await this.owned.set([[ip, JSON.stringify([...srcs].sort())]]);
        if (this.sent.get(ip) === kind) continue;
        await this.sink.setNodeAddress(ip, kind);
        this.sent.set(ip, kind);
      } catch (e) {
        this.logger.error(
          { kind: "Node", ip, sources: [...srcs], err: String(e) },
          "kubernetes node address refused",
        );
      }
    }
  }
}

function parseSources(v: string): string[] {
  try {
    const a = JSON.parse(v) as unknown;
    return Array.isArray(a) ? a.filter((s): s is string => typeof s === "string") : [];
  } catch {
    return [];
  }
}
