/**
 * The agent's local API: JSON over HTTP over a unix socket.
 *
 *   membrane CLI ──AgentClient──▶ /run/membrane/agent.sock (0600, dir 0700) ──▶ Router ──▶ handlers
 *                ◀── JSON | {"error": {...}} | application/x-ndjson stream
 *
 * Plain node:http, no framework: a few dozen local routes need a routing
 * table, a body limit and JSON, which fit in this file, and a daemon running
 * as root is better off without another dependency tree in its request path.
 *
 * Access control is the socket's file mode (only root may connect), so no
 * CORS header is ever sent and a browser page cannot reach the socket anyway.
 * Request bodies are never logged: they may carry secrets (TLS keys, tokens).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { chmod, lstat, unlink } from "node:fs/promises";
import type { Logger } from "pino";
import { MembraneError } from "../../errors.js";
import { RawAnswer, Router, type ApiRequest, type Method, type Route, type StreamRoute } from "./router.js";
import { alreadyRunning, errnoCode, prepareSocketPath } from "./socket.js";
import { errorBody, httpStatus, JSON_TYPE, NDJSON_TYPE } from "./wire.js";

export interface ApiServerParams {
  socketPath: string;
  routes: readonly Route[];
  logger: Logger;
  /** Largest request body accepted (default 8 MiB). */
  maxBodyBytes?: number;
}

export const DEFAULT_MAX_BODY = 8 << 20;

const SECURITY_HEADERS: Record<string, string> = {
  "X-Content-Type-Options": "nosniff",
  "Cache-Control": "no-store",
  "Content-Security-Policy": "default-src 'none'",
};

/** Bytes read and thrown away past the limit before the connection is cut (lets the 413 reach the client). */
const DISCARD_MAX = 64 << 20;

export class ApiServer {
  private readonly router: Router;
  private readonly server: Server;
  private readonly maxBody: number;
  private socketIno: number | undefined;

  constructor(private readonly p: ApiServerParams) {
    this.router = new Router(p.routes);
    this.maxBody = p.maxBodyBytes ?? DEFAULT_MAX_BODY;
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  /** Prepares the directory, removes a stale socket, listens, and restricts the socket to its owner. */
  async start(): Promise<void> {
    const path = this.p.socketPath;
    await prepareSocketPath(path, this.p.logger);
    await new Promise<void>((resolve, reject) => {
      const onError = (e: unknown): void => reject(errnoCode(e) === "EADDRINUSE" ? alreadyRunning(path) : e);
      this.server.once("error", onError);
      // The directory is 0700, so nobody else can reach the socket before the chmod below.
      this.server.listen(path, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    await chmod(path, 0o600);
    this.socketIno = (await lstat(path)).ino;
    this.p.logger.info({ socket: path }, "API listening");
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    // Remove the socket only if it is still ours (a new agent may have replaced it).
    const st = await lstat(this.p.socketPath).catch(() => undefined);
    if (st && st.ino === this.socketIno) await unlink(this.p.socketPath).catch(() => undefined);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const url = new URL(req.url ?? "/", "http://agent");
    const method = req.method ?? "GET";
    const what = `${method} ${url.pathname}`;
    try {
      const m = this.router.match(method, url.pathname);
      if (m.kind === "none") {
        throw new MembraneError("API_ROUTE_NOT_FOUND", `Cannot ${what}: the agent has no such route`, {
          hint: "the CLI and the agent may be different versions; compare `membrane version` with the agent's",
        });
      }
      if (m.kind === "wrong-method") {
        res.setHeader("Allow", m.allow.join(", "));
        await this.drain(req);
        return this.fail(
          res,
          what,
          started,
          new MembraneError(
            "API_ROUTE_NOT_FOUND",
            `Cannot ${what}: the route allows only ${m.allow.join(", ")}`,
          ),
          405,
        );
      }
      const declared = Number(req.headers["content-length"] ?? "0");
      if (declared > this.maxBody) {
        // Refused from its header, unread: nothing of it is buffered, and the connection ends with the answer.
        res.setHeader("Connection", "close");
        res.once("finish", () => req.destroy());
        throw new TooLarge(what, declared, this.maxBody);
      }
      const body = await this.readBody(req, what);
      const controller = new AbortController();
      res.once("close", () => controller.abort());
      const apiReq: ApiRequest = {
        method: method as Method,
        path: url.pathname,
        params: m.params,
        query: url.searchParams,
        body,
        signal: controller.signal,
      };
      if (m.route.kind === "stream") return await this.stream(m.route, apiReq, res, what, started);
      const out = await m.route.handler(apiReq);
      if (out instanceof RawAnswer) {
        res
          .writeHead(out.status, { ...out.headers, "Content-Length": Buffer.byteLength(out.text) })
          .end(out.text);
      } else if (out === undefined) {
        res.writeHead(204).end();
      } else {
        const text = JSON.stringify(out) + "\n";
        res
          .writeHead(m.route.status ?? 200, {
            "Content-Type": JSON_TYPE,
            "Content-Length": Buffer.byteLength(text),
          })
          .end(text);
      }
      this.p.logger.debug(
        { method, path: url.pathname, status: res.statusCode, ms: Date.now() - started },
        "api request",
      );
    } catch (e) {
      this.fail(res, what, started, e);
    }
  }

  private fail(res: ServerResponse, what: string, started: number, e: unknown, status?: number): void {
    const err =
      e instanceof MembraneError
        ? e
        : new MembraneError("API_FAILED", `Cannot ${what}: the agent failed internally`, {
            cause: e,
            hint: "the agent's log has the details",
          });
    const code = status ?? (e instanceof TooLarge ? 413 : httpStatus(err.code));
    const log = { request: what, status: code, code: err.code, ms: Date.now() - started };
    if (code >= 500) this.p.logger.error({ ...log, err: e }, "api request failed");
    else this.p.logger.info({ ...log, message: err.message }, "api request refused");
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const text = JSON.stringify(errorBody(err)) + "\n";
    res.writeHead(code, { "Content-Type": JSON_TYPE, "Content-Length": Buffer.byteLength(text) });
    res.end(text);
  }

  /** Reads and parses the JSON body, within the size limit. */
  private async readBody(req: IncomingMessage, what: string): Promise<unknown> {
    const declared = Number(req.headers["content-length"] ?? "0");
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > this.maxBody) {
        if (size > this.maxBody + DISCARD_MAX) req.destroy();
        continue; // keep reading (and dropping) so that the client gets to see the 413
      }
      chunks.push(chunk);
    }
    if (size > this.maxBody || declared > this.maxBody) {
      throw new TooLarge(what, Math.max(size, declared), this.maxBody);
    }
    if (size === 0) return undefined;
    const type = req.headers["content-type"] ?? "";
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      throw new MembraneError(
        "API_REQUEST_INVALID",
        `Cannot ${what}: the body must be JSON (Content-Type: application/json), not ${JSON.stringify(type)}`,
      );
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (e) {
      // Not V8's message: it quotes the body, which must not reach the log.
      throw new MembraneError("API_REQUEST_INVALID", `Cannot ${what}: the body is not valid JSON`, {
        cause: e,
      });
    }
  }

  private async drain(req: IncomingMessage): Promise<void> {
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > this.maxBody) {
        req.destroy();
        return;
      }
    }
  }

  private async stream(
    route: StreamRoute,
    req: ApiRequest,
    res: ServerResponse,
    what: string,
    started: number,
  ): Promise<void> {
    try {
      route.check?.(req);
    } catch (e) {
      this.fail(res, what, started, e);
      return;
    }
    res.writeHead(200, { "Content-Type": NDJSON_TYPE });
    const send = async (item: unknown): Promise<boolean> => {
      if (res.destroyed || req.signal.aborted) return false;
      if (!res.write(JSON.stringify(item) + "\n")) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off("drain", done);
            res.off("close", done);
            resolve();
          };
          res.on("drain", done);
          res.on("close", done);
        });
      }
      return !res.destroyed && !req.signal.aborted;
    };
    try {
      await route.handler(req, send);
    } catch (e) {
      // Headers are out: the error travels as the stream's last line.
      const err =
        e instanceof MembraneError
          ? e
          : new MembraneError("API_FAILED", `Cannot ${what}: the agent failed internally`, { cause: e });
      this.p.logger.error({ request: what, code: err.code, err: e }, "api stream failed");
      if (!res.destroyed) res.write(JSON.stringify(errorBody(err)) + "\n");
    }
    res.end();
    this.p.logger.debug({ request: what, ms: Date.now() - started }, "api stream ended");
  }
}

class TooLarge extends MembraneError {
  constructor(what: string, size: number, max: number) {
    super(
      "API_REQUEST_INVALID",
      `Cannot ${what}: the request body has ${size} bytes, more than the limit of ${max}`,
      {
        hint: "split the input into several requests",
      },
    );
  }
}
