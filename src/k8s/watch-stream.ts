/**
 * One watch request, read with bounds (the API server is not trusted to be
 * well-behaved: a broken or hostile one could send one endless line):
 *
 *   GET <path>?watch=true&resourceVersion=R&allowWatchBookmarks=true&timeoutSeconds=T
 *     200: newline-separated JSON events, each line <= maxLineBytes
 *            --> cb(type, object) in order; a line over the bound, or one
 *                that is not a JSON event, ends the stream with an error
 *                (the reflector logs it and reconnects with backoff)
 *          events handed over but not yet handled > maxPendingBytes --> the
 *            socket is paused until the handler catches up (TCP backpressure)
 *     other: HTTP error (the Status message, at most 64 KiB read)
 *     no byte for idleMs: error (a silent, half-dead connection)
 *
 * `done` is called once: err undefined when the server ended the stream or
 * the caller aborted it.
 */
import http from "node:http";
import https from "node:https";
import { MembraneError } from "../errors.js";
import type { KObject } from "./api.js";
import { K8sHttpError, statusMessage } from "./http-error.js";

/** A watch line at most (one object: etcd's own limit is 1.5 MiB by default). */
export const WATCH_LINE_MAX_BYTES = 16 * 2 ** 20;
/** Event bytes handed to the handler and not yet handled, before the stream is paused. */
export const WATCH_PENDING_MAX_BYTES = 64 * 2 ** 20;
const ERROR_BODY_MAX_BYTES = 64 * 2 ** 10;

export interface WatchStreamParams {
  readonly url: URL;
  readonly opts: https.RequestOptions;
  /** For messages: the collection path. */
  readonly path: string;
  readonly maxLineBytes: number;
  readonly maxPendingBytes: number;
  readonly idleMs: number;
  /** One event; a returned promise holds its bytes as pending until it settles. */
  readonly cb: (type: string, object: KObject) => Promise<void> | void;
  readonly done: (err?: unknown) => void;
  /** The server answered 200: the stream is open. */
  readonly opened?: () => void;
}

export function openWatch(p: WatchStreamParams): AbortController {
  const ctl = new AbortController();
  const mod = p.url.protocol === "https:" ? https : http;
  let over = false;
  const finish = (err?: unknown): void => {
    if (over) return;
    over = true;
    req.destroy();
    p.done(err);
  };
  const req = mod.request(p.url, { ...p.opts, method: "GET", signal: ctl.signal }, (res) => {
    if (res.statusCode !== 200) return readError(res, p.path, finish);
    p.opened?.();
    const lines = new LineReader(p.maxLineBytes);
    let pending = 0;
    let paused = false;
    const settled = (n: number) => (): void => {
      pending -= n;
      if (paused && pending <= p.maxPendingBytes / 2) {
        paused = false;
        res.resume();
      }
    };
    res.on("data", (chunk: Buffer) => {
      if (over) return;
      let got: Buffer[];
      try {
        got = lines.push(chunk);
      } catch (e) {
        return finish(
          new MembraneError("INPUT_LIMIT_EXCEEDED", `Cannot read the watch of ${p.path}: ${errMsg(e)}`),
        );
      }
      for (const line of got) {
        const ev = parseEvent(line);
        if (!ev) {
          return finish(
            new MembraneError(
              "K8S_API_FAILED",
              `Cannot read the watch of ${p.path}: a line of ${line.length} bytes is not a watch event`,
            ),
          );
        }
        const r = p.cb(ev.type, ev.object);
        if (r instanceof Promise) {
          pending += line.length;
          void r.then(settled(line.length), settled(line.length));
        }
      }
      if (pending > p.maxPendingBytes && !paused) {
        paused = true;
        res.pause();
      }
    });
    res.on("end", () => finish());
    res.on("close", () => finish());
    res.on("error", (e) => finish(e));
  });
  req.setTimeout(p.idleMs, () =>
    finish(
      new MembraneError(
        "K8S_API_FAILED",
        `Cannot read the watch of ${p.path}: no data for ${Math.round(p.idleMs / 1000)} s`,
      ),
    ),
  );
  req.on("error", (e) => finish(ctl.signal.aborted ? undefined : e));
  ctl.signal.addEventListener("abort", () => finish(), { once: true });
  req.end();
  return ctl;
}

/** Splits a byte stream at "\n"; throws when a line grows past `max` bytes (nothing more is buffered). */
export class LineReader {
  private parts: Buffer[] = [];
  private size = 0;

  constructor(private readonly max: number) {}

  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let from = 0;
    for (let nl = chunk.indexOf(10, from); nl !== -1; nl = chunk.indexOf(10, from)) {
      this.take(chunk.subarray(from, nl));
      out.push(this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.size));
      this.parts = [];
      this.size = 0;
      from = nl + 1;
    }
    if (from < chunk.length) this.take(chunk.subarray(from));
    return out.filter((l) => l.length > 0);
  }

  private take(b: Buffer): void {
    if (this.size + b.length > this.max) {
      this.parts = [];
      this.size = 0;
      throw new Error(`a line is longer than ${this.max} bytes`);
    }
    this.parts.push(b);
    this.size += b.length;
  }
}

function parseEvent(line: Buffer): { type: string; object: KObject } | undefined {
  try {
    const d = JSON.parse(line.toString("utf8")) as { type?: unknown; object?: unknown };
    const o = d.object;
    if (typeof d.type !== "string" || typeof o !== "object" || o === null || Array.isArray(o))
      return undefined;
    return { type: d.type, object: o as KObject };
  } catch {
    return undefined;
  }
}

function readError(res: http.IncomingMessage, path: string, finish: (err?: unknown) => void): void {
  const chunks: Buffer[] = [];
  let n = 0;
  res.on("data", (c: Buffer) => {
    if (n < ERROR_BODY_MAX_BYTES) chunks.push(c.subarray(0, ERROR_BODY_MAX_BYTES - n));
    n += c.length;
  });
  const fail = (): void =>
    finish(
      new K8sHttpError(res.statusCode ?? 0, path, statusMessage(Buffer.concat(chunks).toString("utf8"))),
    );
  res.on("end", fail);
  res.on("close", fail);
  res.on("error", fail);
}

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
