/**
 * `membrane ui`: the service map in a browser, for one host or, through the relay, the cluster.
 *
 *   agent (unix socket) --POST /v1/flows/follow (the ring's last N, then live)--> ServiceGraph
 *   or a Hubble Observer API (`--server relay`: every node's flows merged) --GetFlows follow--> ServiceGraph
 *   browser --GET /             the page (page.ts; script and style served as files, strict CSP)
 *           --GET /api/graph?namespace=&verdict=   nodes and edges (graph.ts)
 *           --GET /api/edge?id=                    the edge's latest flows, the policies that decided,
 *                                                   and for a denied edge "why was this dropped?"
 *                                                   (the agent's POST /v1/why for that pair and port)
 *           --GET /api/revision                    the graph's revision (the page polls it: live updates)
 *
 * Binds 127.0.0.1 unless told otherwise: the page shows workload names and
 * policies, so it is as sensitive as `membrane observe`. Answers carry no
 * secret (flows never hold headers or payloads). Only GET; every text reaches
 * the page as JSON and is put into the DOM as text, never as markup.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { AgentClient } from "../agent/client.js";
import { HubbleClient, type HubbleClientTls } from "../observe/hubble/client.js";
import { recordFromHubble } from "../observe/hubble/json.js";
import type { Flow, FlowRecord } from "../observe/index.js";
import { ServiceGraph } from "./graph.js";
import { PAGE_HTML, PAGE_SCRIPT, PAGE_STYLE } from "./page.js";

export interface UiParams {
  /** The agent: its flows when no `hubble` is given, and "why was this dropped?" (optional with `hubble`). */
  readonly agent?: AgentClient;
  /** Read flows from a Hubble Observer API instead (the relay: the whole cluster). */
  readonly hubble?: { readonly address: string; readonly tls?: HubbleClientTls };
  readonly host: string;
  readonly port: number;
  /** Flows of the ring read at start (the rest arrive live). */
  readonly history: number;
}

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
} as const;

export class UiServer {
  readonly graph = new ServiceGraph();
  private server: Server | undefined;
  private readonly stopper = new AbortController();
  /** Set when the agent's flow stream ended with an error (shown by /api/revision). */
  streamError: string | undefined;

  constructor(private readonly p: UiParams) {}

  /** Starts following the agent's flows and serving; resolves with the page's address. */
  async start(): Promise<string> {
    void this.follow().then(
      () => {
        if (!this.stopper.signal.aborted) this.streamError = "the flow stream ended";
      },
      (e: unknown) => {
        if (!this.stopper.signal.aborted) this.streamError = (e as Error).message;
      },
    );
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.p.port, this.p.host, resolve);
    });
    const a = server.address() as AddressInfo;
    return `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}/`;
  }

  /** Follows the flows (the agent's ring, or the Observer API given) into the graph until stop(). */
  private follow(): Promise<void> {
    const add = (rec: FlowRecord | undefined): void => {
      if (rec !== undefined && "flow" in rec) this.graph.add(rec.flow);
    };
    const h = this.p.hubble;
    if (h !== undefined) {
      const c = new HubbleClient(h.address, h.tls);
      const req = { filter: {}, follow: true, number: this.p.history };
      return c.getFlows(req, (j) => add(recordFromHubble(j)), this.stopper.signal).finally(() => c.close());
    }
    if (this.p.agent === undefined)
      return Promise.reject(new Error("no flow source: give an agent or a server"));
    const body = { filter: {}, follow: true, number: this.p.history };
    return this.p.agent.stream(
      "POST",
      "/v1/flows/follow",
      body,
      (item) => add(item as FlowRecord),
      this.stopper.signal,
    );
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://ui");
    if (req.method !== "GET") return send(res, 405, "text/plain", "only GET\n");
    try {
      switch (url.pathname) {
        case "/":
          return send(res, 200, "text/html; charset=utf-8", PAGE_HTML);
        case "/app.js":
          return send(res, 200, "text/javascript; charset=utf-8", PAGE_SCRIPT);
        case "/app.css":
          return send(res, 200, "text/css; charset=utf-8", PAGE_STYLE);
        case "/api/revision":
          return json(res, 200, {
            revision: this.graph.revision,
            ...(this.streamError ? { error: this.streamError } : {}),
          });
        case "/api/graph": {
          const ns = url.searchParams.get("namespace") || undefined;
          const v = url.searchParams.get("verdict");
          const verdict = v === "DROPPED" || v === "FORWARDED" ? v : undefined;
          return json(
            res,
            200,
            this.graph.view({ ...(ns ? { namespace: ns } : {}), ...(verdict ? { verdict } : {}) }),
          );
        }
        case "/api/edge":
          return json(res, ...(await this.edge(url.searchParams.get("id") ?? "")));
        default:
          return send(res, 404, "text/plain", "not found\n");
      }
    } catch (e) {
      return json(res, 500, { error: (e as Error).message });
    }
  }

  private async edge(id: string): Promise<[number, unknown]> {
    const e = this.graph.edges.get(id);
    if (!e) return [404, { error: `no edge ${id}` }];
    const from = this.graph.nodes.get(e.from);
    const to = this.graph.nodes.get(e.to);
    let why: string[] | undefined;
    if (e.dropped > 0) why = await this.why(e.flows.filter((f) => f.verdict === "DROPPED").at(-1));
    return [
      200,
      {
        id: e.id,
        from: from?.label ?? e.from,
        to: to?.label ?? e.to,
        port: e.port,
        forwarded: e.forwarded,
        dropped: e.dropped,
        policies: [...e.policies].sort(),
        flows: e.flows.map((f) => ({
          time: f.time,
          verdict: f.verdict,
          source: f.source?.pod_name ?? f.IP?.source ?? "",
          destination: f.destination?.pod_name ?? f.IP?.destination ?? "",
          summary: f.Summary ?? "",
          ...(f.drop_reason_desc ? { dropReason: f.drop_reason_desc } : {}),
        })),
        ...(why ? { why } : {}),
      },
    ];
  }

  /** "Why was this dropped?" for the edge's latest drop, from the agent (its engine, its proposal). */
  private async why(f: Flow | undefined): Promise<string[] | undefined> {
    if (!f) return undefined;
    const pod = (e: typeof f.source): string | undefined =>
      e?.pod_name ? `${e.namespace ?? "default"}/${e.pod_name}` : undefined;
    const allow: Record<string, unknown> = { verdict: ["DROPPED"] };
    const src = pod(f.source);
    const dst = pod(f.destination);
    if (src) allow["source_pod"] = [src];
    else if (f.IP?.source) allow["source_ip"] = [f.IP.source];
    if (dst) allow["destination_pod"] = [dst];
    else if (f.IP?.destination) allow["destination_ip"] = [f.IP.destination];
    const l4 = f.l4;
    const port =
      l4 && "TCP" in l4 ? l4.TCP.destination_port : l4 && "UDP" in l4 ? l4.UDP.destination_port : undefined;
    if (port !== undefined) allow["destination_port"] = [String(port)];
    if (this.p.agent === undefined)
      return [
        "(no explanation here: the map reads the relay; run `membrane why` on the node that dropped it)",
      ];
    try {
      const a = (await this.p.agent.request("POST", "/v1/why", { filter: { allowlist: [allow] } })) as {
        lines: string[];
        proposal?: string;
      };
      return a.proposal ? [...a.lines, "", a.proposal] : a.lines;
    } catch (e) {
      return [`(no explanation: ${(e as Error).message})`];
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { "content-type": type, ...SECURITY_HEADERS });
  res.end(body);
}

function json(res: ServerResponse, status: number, v: unknown): void {
  send(res, status, "application/json", JSON.stringify(v));
}
