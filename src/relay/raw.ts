/**
 * GetFlowsResponse bytes as the relay passes them on: read just enough of
 * an agent's answer to order it (its `time`) and to know its kind, and
 * forward the bytes unchanged (no decode, no re-encode).
 *
 *   agent --GetFlowsResponse bytes--> scanResponse --RawResponse {bytes, timeMs, kind}--> merge --same bytes--> client
 *
 * The bytes come from another process over the network: a malformed message
 * (a truncated varint or length, a group or reserved wire type, a field
 * longer than the message) is refused with the offset where it breaks,
 * never read past its end.
 */

export type RawKind = "flow" | "node_status" | "lost_events" | "none";

export interface RawResponse {
  readonly bytes: Uint8Array;
  /** The record's `time` (field 1001) in ms since the epoch, fractional; NaN when absent. */
  readonly timeMs: number;
  readonly kind: RawKind;
}

const KINDS: Record<number, RawKind> = { 1: "flow", 2: "node_status", 3: "lost_events" };
const TIME_FIELD = 1001;

export class RawDecodeError extends Error {
  constructor(why: string, offset: number) {
    super(`malformed GetFlowsResponse at byte ${offset}: ${why}`);
  }
}

/** A varint at `pos` as a number (exact below 2^53) and the position after it. */
function varint(b: Uint8Array, pos: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    const byte = b[pos + i];
    if (byte === undefined) throw new RawDecodeError("truncated varint", pos);
    v += (byte & 0x7f) * mul;
    if (byte < 0x80) return [v, pos + i + 1];
    mul *= 128;
  }
  throw new RawDecodeError("varint longer than 10 bytes", pos);
}

/** The position after the value of a field of wire type `wt` that starts at `pos`. */
function skip(b: Uint8Array, pos: number, wt: number, end: number): number {
  let next: number;
  switch (wt) {
    case 0:
      next = varint(b, pos)[1];
      break;
    case 1:
      next = pos + 8;
      break;
    case 2: {
      const [len, p] = varint(b, pos);
      next = p + len;
      break;
    }
    case 5:
      next = pos + 4;
      break;
    default:
      throw new RawDecodeError(`wire type ${wt} is not allowed`, pos);
  }
  if (next > end) throw new RawDecodeError("a field runs past the end", pos);
  return next;
}

/** google.protobuf.Timestamp {seconds = 1, nanos = 2} between start and end, in ms. */
function timestampMs(b: Uint8Array, start: number, end: number): number {
  let seconds = 0;
  let nanos = 0;
  let pos = start;
  while (pos < end) {
    const [tag, p] = varint(b, pos);
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (wt === 0 && (field === 1 || field === 2)) {
      const [v, q] = varint(b, p);
      if (q > end) throw new RawDecodeError("a field runs past the end", p);
      // int64/int32 negatives arrive as 10-byte varints (>= 2^63): no flow time is before 1970.
      if (v >= 2 ** 53) throw new RawDecodeError("negative or huge timestamp", p);
      if (field === 1) seconds = v;
      else nanos = v;
      pos = q;
    } else pos = skip(b, p, wt, end);
  }
  if (nanos > 999_999_999) throw new RawDecodeError("timestamp nanos out of range", start);
  return seconds * 1000 + nanos / 1e6;
}

/** Reads the kind and time of one GetFlowsResponse; throws RawDecodeError on malformed bytes. */
export function scanResponse(bytes: Uint8Array): RawResponse {
  let kind: RawKind = "none";
  let timeMs = Number.NaN;
  let pos = 0;
  const end = bytes.length;
  while (pos < end) {
    const [tag, p] = varint(bytes, pos);
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 0) throw new RawDecodeError("field number 0", pos);
    const next = skip(bytes, p, wt, end);
    if (wt === 2) {
      const start = varint(bytes, p)[1];
      const k = KINDS[field];
      if (k !== undefined) kind = k;
      else if (field === TIME_FIELD) timeMs = timestampMs(bytes, start, next);
    }
    pos = next;
  }
  return { bytes, timeMs, kind };
}
