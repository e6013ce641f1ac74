/**
 * Framing of the NFLOG child's stdout: `[kind u8][length u32 LE][body]`.
 *
 *   kind 1 (datagram): body = receive time (f64 LE, ms since epoch) + one netlink datagram
 *   kind 2 (status):   body = JSON text ({ready}, {error}, {overflow})
 *
 * Binary rather than JSON lines: the packet bytes pass through untouched and
 * the parent parses netlink itself (nflog-msg.ts), which keeps the child tiny.
 */

export const FRAME_DATAGRAM = 1;
export const FRAME_STATUS = 2;
/** A frame larger than this is corrupt: a netlink datagram is at most a few hundred KiB. */
export const MAX_FRAME = 4 << 20;

export function encodeFrame(kind: number, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt8(kind, 0);
  h.writeUInt32LE(body.length, 1);
  return Buffer.concat([h, body]);
}

export interface Frame {
  kind: number;
  body: Buffer;
}

/** Reassembles frames from arbitrary stdout chunks. */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  /** Feeds a chunk; returns the frames it completed. Throws on a corrupt length (the stream cannot resync). */
  push(chunk: Buffer): Frame[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < 5) return [];
    let buf = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
    const out: Frame[] = [];
    let o = 0;
    while (buf.length - o >= 5) {
      const len = buf.readUInt32LE(o + 1);
      if (len > MAX_FRAME) throw new Error(`frame of ${len} bytes exceeds ${MAX_FRAME}`);
      if (buf.length - o - 5 < len) break;
      out.push({ kind: buf.readUInt8(o), body: buf.subarray(o + 5, o + 5 + len) });
      o += 5 + len;
    }
    buf = buf.subarray(o);
    this.pending = buf.length === 0 ? [] : [buf];
    this.pendingBytes = buf.length;
    return out;
  }
}
