/**
 * The relay's Observer API: Hubble's four calls over every node's.
 *
 *   GetFlows      --> flows.ts (merge of every connected agent's stream, node_status events)
 *   ServerStatus  --> the agents' counters summed; num_connected_nodes, num_unavailable_nodes, unavailable_nodes
 *   GetNodes      --> every node in the cluster store: name, address, state, TLS, its counters
 *   GetNamespaces --> the union of the connected agents' namespaces
 *
 * Served on a unix socket (mode 0660) and, when asked, on TCP with TLS (a TCP
 * listener without a certificate is refused: flows name every workload and
 * policy of the cluster).
 */
import { fromJson, type Message } from "@bufbuild/protobuf";
import { Server, status, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { batchWrites } from "../observe/hubble/batch-writes.js";
import { MembraneError } from "../errors.js";
import { observeRequestOf } from "../observe/hubble/request.js";
import { hubbleSchema } from "../observe/hubble/schema.js";
import { bindListeners, closeListeners, type HubbleTls } from "../observe/hubble/listeners.js";
import { bytesFlowsService } from "../observe/hubble/service.js";
import { FollowFlows, historyFlows, type MergeOptions, type RelayCall } from "./flows.js";
import type { MergeStats } from "./merge.js";
import type { Json } from "./peer.js";
import type { PeerPool } from "./pool.js";

export interface RelayServerParams {
  readonly pool: PeerPool;
  readonly version: string;
  readonly merge: MergeOptions;
  readonly socketPath?: string;
  readonly listen?: { readonly address: string; readonly tls: HubbleTls };
  /** How long ServerStatus and GetNamespaces wait for each agent (default 2 s). */
  readonly callTimeoutMs?: number;
}

/** What the relay merged since it started (every GetFlows call, finished or running). */
export interface RelayStats extends MergeStats {
  readonly calls: number;
}

function failServe(what: string, why: string, cause?: unknown): MembraneError {
  return new MembraneError("RELAY_SERVE_FAILED", `Cannot serve the relay's Observer API on ${what}: ${why}`, {
    hint: "Check --socket / --listen and the certificate files.",
    ...(cause === undefined ? {} : { cause }),
  });
}

const u64 = (v: unknown): bigint => (typeof v === "string" && /^\d+$/.test(v) ? BigInt(v) : 0n);

export class RelayServer {
  private readonly server = new Server();
  private readonly started = process.hrtime.bigint();
  private readonly running = new Set<FollowFlows>();
  private totals: RelayStats = { calls: 0, pushed: 0, emitted: 0, buffered: 0, late: 0, overflow: 0 };
  private bound: string[] = [];

  constructor(private readonly p: RelayServerParams) {
    const unary =
      (f: () => Promise<Json>, d: keyof ReturnType<typeof hubbleSchema>) =>
      (_c: ServerUnaryCall<Message, Message>, cb: sendUnaryData<Message>): void =>
        void f().then(
          (j) =>
            cb(null, fromJson(hubbleSchema()[d] as never, j as never, { registry: hubbleSchema().registry })),
          (e: Error) => cb({ code: status.INTERNAL, details: e.message }),
        );
    this.server.addService(bytesFlowsService(), {
      GetFlows: (call: RelayCall) => void this.getFlows(call),
      ServerStatus: unary(() => this.serverStatus(), "ServerStatusResponse"),
      GetNodes: unary(() => Promise.resolve(this.nodes()), "GetNodesResponse"),
      GetNamespaces: unary(() => this.namespaces(), "GetNamespacesResponse"),
    });
  }

  get addresses(): readonly string[] {
    return this.bound;
  }

  stats(): RelayStats {
    const t = { ...this.totals };
    for (const f of this.running) {
      const s = f.merger.stats();
      t.pushed += s.pushed;
      t.emitted += s.emitted;
      t.buffered += s.buffered;
      t.late += s.late;
      t.overflow += s.overflow;
    }
    return t;
  }

  private add(s: MergeStats): void {
    const t = this.totals;
    this.totals = {
      calls: t.calls,
      pushed: t.pushed + s.pushed,
      emitted: t.emitted + s.emitted,
      buffered: 0,
      late: t.late + s.late,
      overflow: t.overflow + s.overflow,
    };
  }

  private async getFlows(call: RelayCall): Promise<void> {
    batchWrites(call); // messages written in batches, not one per turn of the event loop
    let req;
    try {
      req = observeRequestOf(call.request); // the agents would refuse it too: say so once, here
    } catch (e) {
      call.emit("error", { code: status.INVALID_ARGUMENT, details: (e as Error).message });
      return;
    }
    this.totals = { ...this.totals, calls: this.totals.calls + 1 };
    if (!req.follow) {
      this.add(await historyFlows(this.p.pool, call.request, req, call, this.p.merge));
      return;
    }
    const f = new FollowFlows(this.p.pool, call.request, req, call, this.p.merge);
    this.running.add(f);
    try {
      await f.run();
    } finally {
      this.running.delete(f);
      this.add(f.merger.stats());
    }
  }

  private async serverStatus(): Promise<Json> {
    const peers = this.p.pool.peers();
    const timeout = this.p.callTimeoutMs ?? 2000;
    const answers = await Promise.all(
      peers.map(async (p) => {
        const c = this.p.pool.connected(p.name);
        return c === undefined ? undefined : await c.serverStatus(timeout).catch(() => undefined);
      }),
    );
    let [num, max, seen] = [0n, 0n, 0n];
    let rate = 0;
    const unavailable: string[] = [];
    answers.forEach((a, i) => {
      if (a === undefined) {
        unavailable.push(peers[i]?.name ?? "");
        return;
      }
      num += u64(a["num_flows"]);
      max += u64(a["max_flows"]);
      seen += u64(a["seen_flows"]);
      rate += typeof a["flows_rate"] === "number" ? a["flows_rate"] : 0;
    });
    return {
      num_flows: String(num),
      max_flows: String(max),
      seen_flows: String(seen),
      uptime_ns: String(process.hrtime.bigint() - this.started),
      num_connected_nodes: peers.length - unavailable.length,
      num_unavailable_nodes: unavailable.length,
      unavailable_nodes: unavailable,
      version: this.p.version,
      flows_rate: rate,
    };
  }

  private nodes(): Json {
    return {
      nodes: this.p.pool.peers().map((p) => ({
        name: p.name,
        address: p.address.target,
        state: p.state === "connected" ? "NODE_CONNECTED" : "NODE_UNAVAILABLE",
        tls: { enabled: p.address.tls },
        ...(p.state === "connected" && p.status !== undefined
          ? {
              version: p.status["version"] ?? "",
              uptime_ns: p.status["uptime_ns"] ?? "0",
              num_flows: p.status["num_flows"] ?? "0",
              max_flows: p.status["max_flows"] ?? "0",
              seen_flows: p.status["seen_flows"] ?? "0",
            }
          : {}),
      })),
    };
  }

  private async namespaces(): Promise<Json> {
    const timeout = this.p.callTimeoutMs ?? 2000;
    const seen = new Map<string, Json>();
    const all = await Promise.all(
      this.p.pool.peers().map((p) =>
        this.p.pool
          .connected(p.name)
          ?.namespaces(timeout)
          .catch(() => undefined),
      ),
    );
    for (const a of all)
      for (const ns of (a?.["namespaces"] ?? []) as Json[])
        seen.set(`${String(ns["cluster"] ?? "")}/${String(ns["namespace"])}`, ns);
    return { namespaces: [...seen.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, v]) => v) };
  }

  async start(): Promise<void> {
    this.bound = await bindListeners(this.server, this.p, failServe);
  }

  async stop(): Promise<void> {
    closeListeners(this.server, this.bound);
    this.bound = [];
  }
}
