/**
 * The syscall guard loader's binary output (native/membrane-syscall-guard.c), split into frames:
 * `u32 type, u32 length, payload` (little-endian, the loader's host order). Pure; the bytes come
 * from our loader but are checked as if hostile (bounded lengths, record-size multiples, known
 * types); after a malformed frame the stream has lost its framing and nothing more is read.
 *
 *   1 READY (empty) | 2 ERROR text | 3 RECORDS (fixed-size records back to back) | 4 LOST (u64 total)
 *
 * Why frames rather than hex lines: at 50,000 events/s the line reader, the hex decoding and its
 * check took a fifth of the agent's CPU per event (bench/runtime-rate.ts, --cpu-prof).
 */

export type GuardFrame =
  | { readonly kind: "ready" }
  | { readonly kind: "error"; readonly text: string }
  | { readonly kind: "lost"; readonly total: number }
  /** Whole records (each `recordSize` bytes), views into the chunk: use before the next push. */
  | { readonly kind: "records"; readonly records: Buffer; readonly count: number }
  | { readonly kind: "malformed"; readonly why: string };

const READY = 1;
const ERROR = 2;
const RECORDS = 3;
const LOST = 4;

export class GuardFrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private broken = false;
  private readonly maxFrame: number;

  /** `recordSize`: bytes of one record; a RECORDS frame holds at most `maxRecords` of them. */
  constructor(
    private readonly recordSize: number,
    maxRecords = 4096,
  ) {
    this.maxFrame = recordSize * maxRecords;
  }

  /** The frames `chunk` completes. */
  push(chunk: Buffer): GuardFrame[] {
    if (this.broken) return [];
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: GuardFrame[] = [];
    let at = 0;
    while (at + 8 <= this.buf.length) {
      const type = this.buf.readUInt32LE(at);
      const len = this.buf.readUInt32LE(at + 4);
      if (len > this.maxFrame) return this.fail(out, `a frame of ${len} bytes (at most ${this.maxFrame})`);
      if (at + 8 + len > this.buf.length) break;
      const p = this.buf.subarray(at + 8, at + 8 + len);
      at += 8 + len;
      if (type === READY && len === 0) out.push({ kind: "ready" });
      else if (type === ERROR) out.push({ kind: "error", text: p.toString("utf8").slice(0, 1000) });
      else if (type === LOST && len === 8) {
        const total = p.readBigUInt64LE(0);
        out.push({ kind: "lost", total: total > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(total) }); // prettier-ignore
      } else if (type === RECORDS && len > 0 && len % this.recordSize === 0)
        out.push({ kind: "records", records: p, count: len / this.recordSize });
      else return this.fail(out, `an unknown frame (type ${type}, ${len} bytes)`);
    }
    this.buf = at === this.buf.length ? Buffer.alloc(0) : Buffer.from(this.buf.subarray(at));
    return out;
  }

  private fail(out: GuardFrame[], why: string): GuardFrame[] {
    this.broken = true;
    this.buf = Buffer.alloc(0);
    out.push({ kind: "malformed", why });
    return out;
  }
}
