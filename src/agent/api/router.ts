/**
 * The API's routing table: `{method, path, handler}` records, matched by
 * method and by path segments (`/v1/endpoints/:id` binds `id`).
 *
 * A JSON route returns a value (sent as JSON; undefined sends 204). A stream
 * route sends items one per line (`application/x-ndjson`) until its handler
 * returns or the client goes away (for flows).
 */
import { MembraneError } from "../../errors.js";

export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface ApiRequest {
  readonly method: Method;
  /** The path without the query string. */
  readonly path: string;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** The parsed JSON body; undefined when the request had none. */
  readonly body: unknown;
  /** Aborted when the client disconnects. */
  readonly signal: AbortSignal;
}

export interface JsonRoute {
  readonly kind?: "json";
  readonly method: Method;
  readonly path: string;
  /** Status of a successful answer (default 200). */
  readonly status?: number;
  readonly handler: (req: ApiRequest) => unknown;
}

/** Sends one item; resolves false once the client has gone (stop producing then). */
export type Send = (item: unknown) => Promise<boolean>;

export interface StreamRoute {
  readonly kind: "stream";
  readonly method: Method;
  readonly path: string;
  /** Checks the request before the stream starts, so a malformed one gets a 4xx status. */
  readonly check?: (req: ApiRequest) => void;
  readonly handler: (req: ApiRequest, send: Send) => Promise<void>;
}

export type Route = JsonRoute | StreamRoute;

/** A JSON route's answer sent as it is, with its own status and headers (membrane-cni's shim reads one). */
export class RawAnswer {
  constructor(
    readonly status: number,
    readonly headers: Readonly<Record<string, string>>,
    readonly text: string,
  ) {}
}

interface Compiled {
  readonly route: Route;
  readonly segments: readonly string[];
}

export type Match =
  | { readonly kind: "found"; readonly route: Route; readonly params: Record<string, string> }
  | { readonly kind: "wrong-method"; readonly allow: Method[] }
  | { readonly kind: "none" };

export class Router {
  private readonly compiled: Compiled[];

  constructor(routes: readonly Route[]) {
    this.compiled = routes.map((route) => {
      if (!route.path.startsWith("/")) throw new Error(`route path must start with "/": ${route.path}`);
      return { route, segments: route.path.split("/").slice(1) };
    });
  }

  match(method: string, path: string): Match {
    const segs = path.split("/").slice(1);
    const allow: Method[] = [];
    for (const c of this.compiled) {
      const params = bind(c.segments, segs, path);
      if (!params) continue;
      if (c.route.method === method) return { kind: "found", route: c.route, params };
      allow.push(c.route.method);
    }
    return allow.length > 0 ? { kind: "wrong-method", allow } : { kind: "none" };
  }
}

function bind(
  pattern: readonly string[],
  segs: readonly string[],
  path: string,
): Record<string, string> | undefined {
  if (pattern.length !== segs.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] ?? "";
    const s = segs[i] ?? "";
    if (p.startsWith(":")) {
      if (s === "") return undefined;
      try {
        params[p.slice(1)] = decodeURIComponent(s);
      } catch {
        throw new MembraneError(
          "API_REQUEST_INVALID",
          `Cannot route ${path}: segment ${JSON.stringify(s)} is not valid percent-encoding`,
        );
      }
    } else if (p !== s) {
      return undefined;
    }
  }
  return params;
}
