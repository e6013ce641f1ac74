/**
 * HTTP/2 header blocks as the proxy judges and forwards them.
 *
 * Node's nghttp2 already refuses most malformed blocks before a stream
 * exists (upper-case names, connection-specific fields, `te` other than
 * "trailers", unknown or repeated pseudo-headers, differing content-lengths:
 * RST_STREAM PROTOCOL_ERROR). The same rules are checked again here, on the
 * raw field list, so that what the policy sees does not depend on a codec
 * option, and so that the rules are tested on their own.
 *
 * Repeated fields are joined (", ", and "; " for `cookie` as RFC 9113
 * §8.2.3 says), and the joined value is both what the policy judges and
 * what is forwarded: upstream cannot pick another of the values than the
 * one that was judged.
 */
import type { OutgoingHttpHeaders } from "node:http2";

/** Fields that only mean something on one HTTP/1.1 connection (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);
const REQUEST_PSEUDO = new Set([":method", ":path", ":scheme", ":authority"]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const BAD_VALUE = /[\0\r\n]/;

export interface H2Request {
  readonly method: string;
  /** `:path` as received (not normalised). */
  readonly path: string;
  readonly scheme: string;
  /** `:authority`, or the Host header when there is none. */
  readonly authority: string;
  /** Regular fields by lower-case name, repeated ones joined; no pseudo-headers, no `host`. */
  readonly headers: Readonly<Record<string, string>>;
  readonly contentLength: number | undefined;
  /** gRPC as Envoy tells it: content-type "application/grpc" or "application/grpc+...". */
  readonly grpc: boolean;
}

export type H2RequestParse =
  { readonly ok: true; readonly req: H2Request } | { readonly ok: false; readonly reason: string };

/** Validates a request's raw field list ([name, value, name, value, ...]). */
export function parseRequestHeaders(raw: readonly string[]): H2RequestParse {
  const fail = (reason: string): H2RequestParse => ({ ok: false, reason });
  if (raw.length % 2 !== 0) return fail("odd raw header list");
  const pseudo = new Map<string, string>();
  const fields = joinFields(raw, true);
  let regularSeen = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (BAD_VALUE.test(value)) return fail(`header ${name} has a NUL, CR or LF in its value`);
    if (name.startsWith(":")) {
      if (!REQUEST_PSEUDO.has(name)) return fail(`unknown pseudo-header ${name}`);
      if (regularSeen) return fail(`pseudo-header ${name} after a regular header`);
      if (pseudo.has(name)) return fail(`repeated pseudo-header ${name}`);
      pseudo.set(name, value);
      continue;
    }
    regularSeen = true;
    if (!TOKEN.test(name)) return fail(`invalid header name ${JSON.stringify(name)}`);
    if (CONNECTION_SPECIFIC.has(name)) return fail(`connection-specific header ${name}`);
    if (name === "te" && value.trim().toLowerCase() !== "trailers") return fail("te other than trailers");
  }
  const method = pseudo.get(":method");
  if (!method || !TOKEN.test(method.toLowerCase())) return fail("missing or invalid :method");
  if (method === "CONNECT") return fail("CONNECT is not supported");
  const path = pseudo.get(":path");
  const scheme = pseudo.get(":scheme");
  if (!path || !scheme) return fail("missing :path or :scheme");
  if (!path.startsWith("/") && !(path === "*" && method === "OPTIONS")) return fail("invalid :path");
  const host = fields.get("host");
  const authority = pseudo.get(":authority") ?? host;
  if (!authority) return fail("missing :authority");
  if (host !== undefined && host !== authority) return fail("host header differs from :authority");
  fields.delete("host");
  let contentLength: number | undefined;
  const cl = fields.get("content-length");
  if (cl !== undefined) {
    const values = new Set(cl.split(",").map((v) => v.trim()));
    const only = values.size === 1 ? [...values][0] : undefined;
    if (!only || !/^[0-9]{1,15}$/.test(only)) return fail("invalid or conflicting content-length");
    contentLength = Number(only);
    fields.set("content-length", only); // identical repeats forwarded once
  }
  const ct = fields.get("content-type") ?? "";
  const grpc = ct === "application/grpc" || ct.startsWith("application/grpc+");
  return {
    ok: true,
    req: { method, path, scheme, authority, headers: Object.fromEntries(fields), contentLength, grpc },
  };
}

/**
 * Response headers or trailers to pass on: pseudo-headers other than
 * `:status` and connection-specific fields dropped, repeated fields joined
 * except `set-cookie` (which cannot be joined).
 */
export function forwardableFields(raw: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const cookies: string[] = [];
  for (const [name, value] of joinFields(raw, false)) {
    if (name === "set-cookie") continue;
    out[name] = value;
  }
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i] === "set-cookie") cookies.push(raw[i + 1] as string);
  if (cookies.length > 0) out["set-cookie"] = cookies;
  return out;
}

/** Lower-case name -> joined value, without connection-specific fields and pseudo-headers (but `:status`). */
function joinFields(raw: readonly string[], request: boolean): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    if (name.startsWith(":") && (request || name !== ":status")) continue;
    if (CONNECTION_SPECIFIC.has(name) || (!request && name === "te")) continue;
    const prev = m.get(name);
    m.set(name, prev === undefined ? value : `${prev}${name === "cookie" ? "; " : ", "}${value}`);
  }
  return m;
}

/**
 * Listens to a node:http2 header event ("stream", "response", "headers",
 * "trailers") with its raw field list, which @types/node does not declare.
 * `skip` is the number of arguments before the headers object (1 for "stream").
 */
export function onHeaderEvent(
  emitter: NodeJS.EventEmitter,
  event: string,
  skip: 0 | 1,
  f: (flags: number, raw: readonly string[], first: unknown) => void,
): void {
  emitter.on(event, (...args: unknown[]) => {
    const flags = args[skip + 1];
    const raw = args[skip + 2];
    f(typeof flags === "number" ? flags : 0, Array.isArray(raw) ? raw.map(String) : [], args[0]);
  });
}
