/**
 * The messages of a pooled node connection (channel.ts), inside its TLS session: a 4-byte
 * big-endian length, then one JSON object. Parsed as hostile input: bounded frames, every field
 * checked, anything else ends the connection.
 *
 *   initiator -> responder  {t:"pair", id, src, dst, side, nonce, chain:[base64 DER], sig?}
 *   responder -> initiator  {t:"ok", id, chain, sig?} | {t:"no", id, why}
 * `sig` is left out only where protocol v2 allows it (pair-proof.ts: the leaf's key was proven on
 * the connection already); whether that holds is the connection's judgement, not the parser's.
 */
import { MembraneError } from "../errors.js";
import type { PairClaim } from "./pair-proof.js";

/** The largest frame either side accepts (a chain of a few certificates fits many times). */
export const MAX_FRAME = 64 * 1024;
const MAX_CHAIN = 8;
const MAX_WHY = 300;

export interface PairRequest extends PairClaim {
  readonly t: "pair";
  readonly chain: readonly Buffer[];
  /** Absent: the leaf's key was proven earlier on this connection (protocol v2). */
  readonly sig?: Buffer;
}

export type PairAnswer =
  | { readonly t: "ok"; readonly id: number; readonly chain: readonly Buffer[]; readonly sig?: Buffer }
  | { readonly t: "no"; readonly id: number; readonly why: string };

const bad = (why: string): MembraneError =>
  new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot read a message of the pooled connection: ${why}`);

export function encodeFrame(m: PairRequest | PairAnswer): Buffer {
  const plain =
    m.t === "no"
      ? m
      : { ...m, chain: m.chain.map((c) => c.toString("base64")), sig: m.sig?.toString("base64") };
  const body = Buffer.from(JSON.stringify(plain));
  if (body.length > MAX_FRAME) throw bad(`a frame of ${body.length} bytes is over ${MAX_FRAME}`);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length, 0);
  return Buffer.concat([h, body]);
}

/** Splits a byte stream into frame bodies; throws on a frame over MAX_FRAME. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len === 0 || len > MAX_FRAME) throw bad(`a frame of ${len} bytes (1..${MAX_FRAME} allowed)`);
      if (this.buf.length < 4 + len) break;
      out.push(this.buf.subarray(4, 4 + len));
      this.buf = this.buf.subarray(4 + len);
    }
    return out;
  }
}

function object(body: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(body.toString("utf8"));
  } catch {
    throw bad("not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad("not a JSON object");
  return v as Record<string, unknown>;
}

const int = (o: Record<string, unknown>, k: string, max: number): number => {
  const v = o[k];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > max) throw bad(`${k} is not a whole number 1..${max}`); // prettier-ignore
  return v;
};

const b64 = (v: unknown, what: string, max: number): Buffer => {
  if (typeof v !== "string" || v.length === 0 || v.length > max * 2 || !/^[A-Za-z0-9+/]+={0,2}$/.test(v))
    throw bad(`${what} is not base64`);
  const b = Buffer.from(v, "base64");
  if (b.length === 0 || b.length > max) throw bad(`${what} is empty or over ${max} bytes`);
  return b;
};

const chainOf = (v: unknown): Buffer[] => {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_CHAIN) throw bad(`chain is not a list of 1..${MAX_CHAIN} certificates`); // prettier-ignore
  return v.map((c, i) => b64(c, `chain[${i}]`, 16 * 1024));
};

const keys = (o: Record<string, unknown>, allowed: readonly string[]): void => {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw bad(`unknown field ${JSON.stringify(k.slice(0, 40))}`); // prettier-ignore
};

export function parseRequest(body: Buffer): PairRequest {
  const o = object(body);
  if (o["t"] !== "pair") throw bad("not a pair request");
  keys(o, ["t", "id", "src", "dst", "side", "nonce", "chain", "sig"]);
  const side = o["side"];
  if (side !== "s" && side !== "d") throw bad('side is not "s" or "d"');
  const nonce = b64(o["nonce"], "nonce", 64).toString("base64");
  if (Buffer.from(nonce, "base64").length < 16) throw bad("nonce is shorter than 16 bytes");
  const r: PairRequest = { t: "pair", id: int(o, "id", 2 ** 52), src: int(o, "src", 0x01ffffff), dst: int(o, "dst", 0x01ffffff), side, nonce, chain: chainOf(o["chain"]) }; // prettier-ignore
  return o["sig"] === undefined ? r : { ...r, sig: b64(o["sig"], "sig", 512) };
}

export function parseAnswer(body: Buffer): PairAnswer {
  const o = object(body);
  const id = int(o, "id", 2 ** 52);
  if (o["t"] === "no") {
    keys(o, ["t", "id", "why"]);
    const why = typeof o["why"] === "string" ? o["why"].slice(0, MAX_WHY) : "no reason given";
    return { t: "no", id, why };
  }
  if (o["t"] !== "ok") throw bad('not an answer ("ok" or "no")');
  keys(o, ["t", "id", "chain", "sig"]);
  const a = { t: "ok" as const, id, chain: chainOf(o["chain"]) };
  return o["sig"] === undefined ? a : { ...a, sig: b64(o["sig"], "sig", 512) };
}
