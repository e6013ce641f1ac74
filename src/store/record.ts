/**
 * Framing for the embedded store's files: each record is
 *
 *   [u32 BE payload length][u32 BE CRC-32 of payload][payload bytes]
 *
 * so that a torn write (the process or machine died mid-append) or a flipped
 * bit is detected on open. Node 20's zlib has no crc32, hence the small
 * table-driven CRC-32 (IEEE 802.3 polynomial, as zlib and PNG use) below.
 */

const HEADER = 8;
/** Larger lengths can only come from a corrupt header. */
export const MAX_RECORD_BYTES = 1 << 30;

let table: Uint32Array | undefined;

function crcTable(): Uint32Array {
  if (table) return table;
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  table = t;
  return t;
}

export function crc32(buf: Uint8Array): number {
  const t = crcTable();
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = (t[(c ^ (buf[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function encodeRecord(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.writeUInt32BE(crc32(payload), 4);
  payload.copy(out, HEADER);
  return out;
}

export interface DecodedRecords {
  readonly payloads: Buffer[];
  /** Bytes from the start that hold whole, intact records. */
  readonly validBytes: number;
  /** Why decoding stopped before the end of the buffer; undefined if it did not. */
  readonly problem: string | undefined;
}

/** Decodes records until the end of `buf` or the first torn or corrupt one. */
export function decodeRecords(buf: Buffer): DecodedRecords {
  const payloads: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < HEADER) {
      return { payloads, validBytes: off, problem: `torn record header at byte ${off}` };
    }
    const len = buf.readUInt32BE(off);
    const sum = buf.readUInt32BE(off + 4);
    if (len > MAX_RECORD_BYTES) {
      return { payloads, validBytes: off, problem: `impossible record length ${len} at byte ${off}` };
    }
    if (buf.length - off - HEADER < len) {
      return { payloads, validBytes: off, problem: `torn record at byte ${off} (${len} bytes announced)` };
    }
    const payload = buf.subarray(off + HEADER, off + HEADER + len);
    if (crc32(payload) !== sum) {
      return { payloads, validBytes: off, problem: `checksum mismatch in record at byte ${off}` };
    }
    payloads.push(payload);
    off += HEADER + len;
  }
  return { payloads, validBytes: off, problem: undefined };
}
