/**
 * One HTTP/1.1 client request (read whole by exchange.ts) forwarded to an h2c
 * backend (a Service port with appProtocol `kubernetes.io/h2c` or `grpc`) on
 * that endpoint's HTTP/2 session, and the answer written back as HTTP/1.1:
 * the head with connection-specific fields dropped and the route's
 * ResponseHeaderModifier applied, the body as the backend's content-length
 * says or chunked. A backend failure before the head: 502. The route's
 * timeouts exceeded (`limitMs`): the backend's stream is reset (CANCEL; the
 * session and its other streams go on) and the caller answers 504, or cuts
 * the client connection when the head was already sent.
 *
 *   exchange --head fields + body--> session.request --response, DATA--> HTTP/1.1 bytes --> client
 */
import { STATUS_CODES } from "node:http";
import { constants, type OutgoingHttpHeaders } from "node:http2";
import { modifyHeaders } from "./filters.js";
import type { H2Sessions } from "../proxy/http2/sessions.js";
import type { HeaderModifier } from "./model.js";

const HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "host",
]);

export interface H1ToH2Params {
  readonly sessions: H2Sessions;
  readonly address: string;
  readonly port: number;
  readonly method: string;
  readonly target: string;
  readonly authority: string;
  readonly headers: readonly { readonly name: string; readonly value: string }[];
  readonly body: Buffer;
  readonly mods: readonly HeaderModifier[];
  /** The client connection ends after this response. */
  readonly close: boolean;
  /** The route's timeouts for this attempt, ms from now (timeouts.ts); absent: none. */
  readonly limitMs?: number;
  readonly write: (b: Buffer) => void;
  /**
   * Once. `failed`: the exchange broke; `headSent` says whether the client already has a
   * head (then its connection must be cut, else the caller answers 502, or 504 when `expired`).
   */
  readonly done: (o: { status: number; failed?: string; headSent: boolean; expired?: boolean }) => void;
}

export function forwardOverH2(p: H1ToH2Params): void {
  const out: OutgoingHttpHeaders = {
    ":method": p.method,
    ":path": p.target,
    ":scheme": "http",
    ":authority": p.authority,
  };
  for (const h of p.headers) {
    const k = h.name.toLowerCase();
    if (HOP.has(k) || k === "content-length") continue;
    out[k] = out[k] === undefined ? h.value : `${String(out[k])}, ${h.value}`;
  }
  if (p.body.length > 0) out["content-length"] = String(p.body.length);
  let status = 0;
  let chunked = false;
  let finished = false;
  let timer: NodeJS.Timeout | undefined;
  const finish = (failed?: string, expired = false): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    p.done({
      status: expired && status === 0 ? 504 : status === 0 ? 502 : status,
      headSent: status !== 0,
      ...(failed !== undefined ? { failed } : {}),
      ...(expired ? { expired } : {}),
    });
  };
  let s;
  try {
    s = p.sessions.get(p.address, p.port).request(out, { endStream: p.body.length === 0 });
  } catch (e) {
    return finish(`backend session: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (p.body.length > 0) s.end(p.body);
  s.setTimeout(60_000, () => s.close());
  if (p.limitMs !== undefined) {
    const stream = s;
    timer = setTimeout(() => {
      // Finished first: the stream's close (RST_STREAM CANCEL to the backend) then changes nothing.
      finish("the route's timeouts were exceeded", true);
      stream.close(constants.NGHTTP2_CANCEL);
    }, p.limitMs);
  }
  s.on("error", () => undefined);
  s.on("response", (h) => {
    status = Number(h[":status"]);
    let fields = Object.entries(h)
      .filter(([k, v]) => !k.startsWith(":") && !HOP.has(k) && v !== undefined)
      .flatMap(([name, v]) => (Array.isArray(v) ? v : [String(v)]).map((value) => ({ name, value })));
    for (const m of p.mods) fields = modifyHeaders(fields, m);
    const bodyless = p.method === "HEAD" || status === 204 || status === 304;
    chunked = !bodyless && h["content-length"] === undefined;
    if (chunked) fields.push({ name: "transfer-encoding", value: "chunked" });
    if (p.close) fields.push({ name: "connection", value: "close" });
    const lines = [
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`,
      ...fields.map((f) => `${f.name}: ${f.value}`),
    ];
    p.write(Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"));
  });
  s.on("data", (c: Buffer) => {
    if (status === 0 || c.length === 0) return;
    p.write(
      chunked ? Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from("\r\n")]) : c,
    );
  });
  s.on("end", () => {
    if (status !== 0 && chunked) p.write(Buffer.from("0\r\n\r\n"));
    finish();
  });
  s.on("close", () => {
    if (status === 0) return finish("the backend closed the stream before answering");
    // Reset mid-body: what the client has is cut short; it must not take it as whole.
    if (!finished) finish("the backend reset the stream mid-response");
  });
}
