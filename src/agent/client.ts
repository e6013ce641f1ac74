/**
 * The CLI's side of the agent API.
 *
 *   new AgentClient({socketPath}).request("GET", "/v1/endpoints") ──▶ parsed JSON
 *                                                                  ╰─▶ throws the agent's MembraneError
 *
 * Errors come back as the same MembraneError the agent raised (code, message,
 * hint, issues), so the CLI prints them as if they were local. A socket that
 * is missing or refuses is AGENT_UNREACHABLE with a hint to start the agent.
 *
 * A change (POST, PUT, PATCH, DELETE) whose answer never came is reported
 * with what is known: refused before it was sent = nothing was applied; no
 * answer in time or the connection dropped after it was sent = it may still
 * be (or have been) applied: the message says how to check. (The agent drops
 * a request still queued when its client goes away; one already started completes.)
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { MembraneError } from "../errors.js";
import type { RemoteEndpointSpec } from "../policy/query.js";
import { errorFromBody, isErrorBody, JSON_TYPE } from "./api/wire.js";
import type { RemoteEndpointsResult } from "./controllers/remote-endpoints.js";

export const DEFAULT_SOCKET = "/run/membrane/agent.sock";

export interface AgentClientParams {
  socketPath?: string;
  /** Give up on a request after this long (default 30 s; streams have no limit). */
  timeoutMs?: number;
}

export class AgentClient {
  readonly socketPath: string;
  private readonly timeoutMs: number;

  constructor(p: AgentClientParams = {}) {
    this.socketPath = p.socketPath ?? DEFAULT_SOCKET;
    this.timeoutMs = p.timeoutMs ?? 30_000;
  }

  /** Sends one request; resolves with the parsed JSON answer (undefined for 204). */
  async request(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await this.send(method, path, body, this.timeoutMs);
    const text = (await readAll(res)).toString("utf8");
    if (res.statusCode === 204 || (text === "" && (res.statusCode ?? 0) < 400)) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new MembraneError(
        "API_FAILED",
        `Cannot ${method} ${path}: the agent answered HTTP ${res.statusCode} with a body that is not JSON`,
        {
          hint: "the socket may belong to another program; check the agent's log",
        },
      );
    }
    if ((res.statusCode ?? 500) >= 400) {
      throw (
        errorFromBody(parsed) ??
        new MembraneError(
          "API_FAILED",
          `Cannot ${method} ${path}: the agent answered HTTP ${res.statusCode} without an error description`,
        )
      );
    }
    return parsed;
  }

  /** Adds or changes other nodes' endpoints in bulk (all or none; at most 10,000 per call). */
  async upsertRemoteEndpoints(endpoints: readonly RemoteEndpointSpec[]): Promise<RemoteEndpointsResult> {
    return (await this.request("PUT", "/v1/remote-endpoints", { endpoints })) as RemoteEndpointsResult;
  }

  /** Forgets other nodes' endpoints by address (unknown ones are left alone). */
  async deleteRemoteEndpoints(ips: readonly string[]): Promise<RemoteEndpointsResult> {
    return (await this.request("DELETE", "/v1/remote-endpoints", { ips })) as RemoteEndpointsResult;
  }

  async listRemoteEndpoints(): Promise<(RemoteEndpointSpec & { identity: number })[]> {
    return (await this.request("GET", "/v1/remote-endpoints")) as (RemoteEndpointSpec & {
      identity: number;
    })[];
  }

  /**
   * Sends a request to a stream route and calls `onItem` for each line of
   * the answer; resolves when the agent ends the stream. An error line from
   * the agent is thrown. Aborting `signal` closes the stream.
   */
  async stream(
    method: string,
    path: string,
    body: unknown,
    onItem: (item: unknown) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const res = await this.send(method, path, body, 0, signal);
    if ((res.statusCode ?? 500) >= 400) {
      const text = (await readAll(res)).toString("utf8");
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      throw (
        errorFromBody(parsed) ??
        new MembraneError("API_FAILED", `Cannot ${method} ${path}: the agent answered HTTP ${res.statusCode}`)
      );
    }
    let rest = "";
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        rest += chunk.toString("utf8");
        const lines = rest.split("\n");
        rest = lines.pop() ?? "";
        for (const line of lines) {
          if (line.trim() === "") continue;
          const item: unknown = JSON.parse(line);
          if (isErrorBody(item)) throw errorFromBody(item);
          onItem(item);
        }
      }
    } catch (e) {
      if (signal?.aborted) return;
      throw e;
    }
  }

  private send(
    method: string,
    path: string,
    body: unknown,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<IncomingMessage> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), "utf8");
    const headers: Record<string, string | number> = { Accept: JSON_TYPE };
    if (payload) {
      headers["Content-Type"] = JSON_TYPE;
      headers["Content-Length"] = payload.length;
    }
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        { socketPath: this.socketPath, method, path, headers, ...(signal ? { signal } : {}) },
        resolve,
      );
      if (timeoutMs > 0) {
        req.setTimeout(timeoutMs, () =>
          req.destroy(
            isChange(method, path)
              ? new MembraneError(
                  "AGENT_UNREACHABLE",
                  `Cannot ${method} ${path}: no answer from the agent within ${timeoutMs / 1000} s; the request may still be applied (if the agent had not started it, it is dropped); check with \`${checkCommand(path)}\``,
                  {
                    hint: "the agent may be busy or stuck; check its log (the JSON lines `membrane agent` writes on standard error)",
                  },
                )
              : new MembraneError(
                  "AGENT_UNREACHABLE",
                  `Cannot reach the agent at ${this.socketPath}: no answer within ${timeoutMs / 1000} s`,
                  {
                    hint: "the agent may be busy or stuck; check its log (the JSON lines `membrane agent` writes on standard error)",
                  },
                ),
          ),
        );
      }
      let sent = false;
      req.on("finish", () => (sent = true));
      req.on("error", (e) => reject(this.unreachable(e, method, path, sent)));
      req.end(payload);
    });
  }

  private unreachable(e: unknown, method: string, path: string, sent: boolean): unknown {
    if (e instanceof MembraneError) return e;
    const code = (e as NodeJS.ErrnoException).code;
    if (isChange(method, path) && sent && (code === "ECONNRESET" || code === "EPIPE")) {
      return new MembraneError(
        "AGENT_UNREACHABLE",
        `Cannot ${method} ${path}: the agent closed the connection before answering (it stopped or died); the request may or may not have been applied: check with \`${checkCommand(path)}\` once the agent runs again`,
        { cause: e, hint: "start it with `membrane agent`" },
      );
    }
    const why: Record<string, string> = {
      ENOENT: "the socket does not exist",
      ECONNREFUSED: "nothing is listening on the socket",
      ENOTSOCK: "the path is not a socket",
      EACCES: "permission denied",
      ECONNRESET: "the agent closed the connection",
      EPIPE: "the agent closed the connection",
    };
    const reason = code !== undefined ? why[code] : undefined;
    if (reason === undefined) return e;
    const nothing = isChange(method, path) && !sent ? " (nothing was applied)" : "";
    return new MembraneError(
      "AGENT_UNREACHABLE",
      `Cannot reach the agent at ${this.socketPath}: ${reason}${nothing}`,
      {
        cause: e,
        hint:
          code === "EACCES"
            ? "the socket is for root only: run the command with sudo"
            : "start it with `membrane agent`",
      },
    );
  }
}

/** A request that changes state (flow queries are POSTs that change nothing). */
function isChange(method: string, path: string): boolean {
  if (method === "GET" || method === "HEAD") return false;
  return !path.startsWith("/v1/flows") && path !== "/v1/why";
}

/** The command that shows whether a change to `path` took effect. */
function checkCommand(path: string): string {
  if (path.startsWith("/v1/policies")) return "membrane get policies";
  if (path.startsWith("/v1/endpoints")) return "membrane get endpoints";
  if (path.startsWith("/v1/remote-endpoints")) return "GET /v1/remote-endpoints";
  return "membrane get status";
}

function readAll(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => resolve(Buffer.concat(chunks)));
    res.on("error", reject);
  });
}
