/**
 * strongSwan's VICI wire format (our own codec, written from the protocol's description): what
 * the agent sends to charon and reads back over its control socket.
 *
 *   packet   = u32 length (big-endian, of what follows) . u8 type . [u8 name length . name] . message
 *   message  = elements: 1 section start (name) | 2 section end | 3 key (name) = u16 length . value
 *              | 4 list start (name) | 5 list item (u16 length . value) | 6 list end
 *   types    = 0 command request (named) | 1 command response | 2 unknown command
 *              | 3 event register (named) | 4 event unregister (named) | 5 event confirm
 *              | 6 unknown event | 7 event (named, message)
 *
 * A message decodes into a ViciMessage: a key's value is a string (values are text in every
 * command we use), a section a nested ViciMessage, a list a string array. The decoder reads
 * untrusted bytes: every length is checked against what is left, nesting is bounded, names are
 * not allowed to reach Object.prototype (the map has a null prototype), and a malformed packet
 * is a ViciWireError naming the offset.
 */

export type ViciValue = string | readonly string[] | ViciMessage;
export interface ViciMessage {
  readonly [key: string]: ViciValue;
}

export const VICI_MAX_PACKET = 512 * 1024;
const MAX_DEPTH = 16;

export const PacketType = {
  CMD_REQUEST: 0,
  CMD_RESPONSE: 1,
  CMD_UNKNOWN: 2,
  EVENT_REGISTER: 3,
  EVENT_UNREGISTER: 4,
  EVENT_CONFIRM: 5,
  EVENT_UNKNOWN: 6,
  EVENT: 7,
} as const;

const SECTION_START = 1;
const SECTION_END = 2;
const KEY_VALUE = 3;
const LIST_START = 4;
const LIST_ITEM = 5;
const LIST_END = 6;

const NAMED = new Set<number>([PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER, PacketType.EVENT]); // prettier-ignore
const WITH_MESSAGE = new Set<number>([PacketType.CMD_REQUEST, PacketType.CMD_RESPONSE, PacketType.EVENT]);

export class ViciWireError extends Error {
  constructor(
    readonly offset: number,
    why: string,
  ) {
    super(`malformed VICI packet at byte ${offset}: ${why}`);
  }
}

export interface ViciPacket {
  readonly type: number;
  readonly name?: string;
  readonly message?: ViciMessage;
}

function nameBytes(name: string, what: string): Buffer {
  const b = Buffer.from(name, "utf8");
  if (b.length === 0 || b.length > 255)
    throw new RangeError(`VICI ${what} ${JSON.stringify(name)} must be 1-255 bytes`);
  return b;
}

function valueBytes(v: string, key: string): Buffer {
  const b = Buffer.from(v, "utf8");
  if (b.length > 0xffff) throw new RangeError(`VICI value of ${JSON.stringify(key)} is over 65535 bytes`);
  return b;
}

function encodeMessage(m: ViciMessage, out: Buffer[], depth: number): void {
  if (depth > MAX_DEPTH) throw new RangeError("VICI message nested too deep");
  for (const [k, v] of Object.entries(m)) {
    const name = nameBytes(k, "key");
    if (typeof v === "string") {
      const val = valueBytes(v, k);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(val.length);
      out.push(Buffer.from([KEY_VALUE, name.length]), name, len, val);
    } else if (Array.isArray(v)) {
      out.push(Buffer.from([LIST_START, name.length]), name);
      for (const item of v as readonly string[]) {
        const val = valueBytes(item, k);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(val.length);
        out.push(Buffer.from([LIST_ITEM]), len, val);
      }
      out.push(Buffer.from([LIST_END]));
    } else {
      out.push(Buffer.from([SECTION_START, name.length]), name);
      encodeMessage(v as ViciMessage, out, depth + 1);
      out.push(Buffer.from([SECTION_END]));
    }
  }
}

/** One whole packet, length prefix included. */
export function encodePacket(p: ViciPacket): Buffer {
  const parts: Buffer[] = [Buffer.from([p.type])];
  if (NAMED.has(p.type)) {
    const n = nameBytes(p.name ?? "", "name");
    parts.push(Buffer.from([n.length]), n);
  }
  if (WITH_MESSAGE.has(p.type)) encodeMessage(p.message ?? {}, parts, 0);
  const body = Buffer.concat(parts);
  if (body.length > VICI_MAX_PACKET)
    throw new RangeError(`VICI packet of ${body.length} bytes is over the limit`);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

class Reader {
  off = 0;
  constructor(private readonly b: Buffer) {}
  left(): number {
    return this.b.length - this.off;
  }
  u8(what: string): number {
    if (this.left() < 1) throw new ViciWireError(this.off, `${what} cut short`);
    return this.b[this.off++] as number;
  }
  bytes(n: number, what: string): Buffer {
    if (this.left() < n) throw new ViciWireError(this.off, `${what} needs ${n} bytes, ${this.left()} left`);
    const s = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return s;
  }
  name(what: string): string {
    const n = this.u8(`${what} length`);
    if (n === 0) throw new ViciWireError(this.off - 1, `empty ${what}`);
    return this.bytes(n, what).toString("utf8");
  }
  value(what: string): string {
    const hi = this.u8(`${what} length`);
    const lo = this.u8(`${what} length`);
    return this.bytes((hi << 8) | lo, what).toString("utf8");
  }
}

function put(target: Record<string, ViciValue>, key: string, v: ViciValue, at: number): void {
  if (Object.prototype.hasOwnProperty.call(target, key)) throw new ViciWireError(at, `duplicate key ${JSON.stringify(key)}`); // prettier-ignore
  target[key] = v;
}

/** Decodes a message (the bytes after a packet's type and name). */
export function decodeMessage(b: Buffer): ViciMessage {
  const r = new Reader(b);
  const root: Record<string, ViciValue> = Object.create(null) as Record<string, ViciValue>;
  const stack: Record<string, ViciValue>[] = [root];
  while (r.left() > 0) {
    const at = r.off;
    const t = r.u8("element type");
    const top = stack[stack.length - 1] as Record<string, ViciValue>;
    switch (t) {
      case SECTION_START: {
        if (stack.length > MAX_DEPTH) throw new ViciWireError(at, "sections nested too deep");
        const s = Object.create(null) as Record<string, ViciValue>;
        put(top, r.name("section name"), s, at);
        stack.push(s);
        break;
      }
      case SECTION_END:
        if (stack.length === 1) throw new ViciWireError(at, "section end without a section");
        stack.pop();
        break;
      case KEY_VALUE: {
        const k = r.name("key");
        put(top, k, r.value(`value of ${JSON.stringify(k)}`), at);
        break;
      }
      case LIST_START: {
        const k = r.name("list name");
        const items: string[] = [];
        for (;;) {
          const it = r.off;
          const e = r.u8("list element type");
          if (e === LIST_END) break;
          if (e !== LIST_ITEM)
            throw new ViciWireError(it, `element type ${e} inside list ${JSON.stringify(k)}`);
          items.push(r.value(`item of ${JSON.stringify(k)}`));
        }
        put(top, k, items, at);
        break;
      }
      default:
        throw new ViciWireError(at, `unknown element type ${t}`);
    }
  }
  if (stack.length !== 1) throw new ViciWireError(b.length, `${stack.length - 1} section(s) not closed`);
  return root;
}

/** Decodes one packet body (without its length prefix). */
export function decodePacket(body: Buffer): ViciPacket {
  const r = new Reader(body);
  const type = r.u8("packet type");
  if (type > PacketType.EVENT) throw new ViciWireError(0, `unknown packet type ${type}`);
  const name = NAMED.has(type) ? r.name("packet name") : undefined;
  const message = WITH_MESSAGE.has(type) ? decodeMessage(body.subarray(r.off)) : undefined;
  if (!WITH_MESSAGE.has(type) && r.left() > 0) throw new ViciWireError(r.off, `${r.left()} bytes after a packet of type ${type}`); // prettier-ignore
  return { type, ...(name !== undefined ? { name } : {}), ...(message ? { message } : {}) };
}

/** Splits a byte stream into packet bodies; keeps the rest for the next chunk. */
export class PacketSplitter {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    while (this.buf.length >= 4) {
      const n = this.buf.readUInt32BE(0);
      if (n === 0 || n > VICI_MAX_PACKET)
        throw new ViciWireError(0, `packet length ${n} (1-${VICI_MAX_PACKET})`);
      if (this.buf.length < 4 + n) break;
      out.push(this.buf.subarray(4, 4 + n));
      this.buf = this.buf.subarray(4 + n);
    }
    return out;
  }
}

/** A string field of a message (undefined when absent or not a string). */
export function str(m: ViciMessage | undefined, key: string): string | undefined {
  const v = m?.[key];
  return typeof v === "string" ? v : undefined;
}

/** A section of a message (undefined when absent or not a section). */
export function section(m: ViciMessage | undefined, key: string): ViciMessage | undefined {
  const v = m?.[key];
  return v !== undefined && typeof v !== "string" && !Array.isArray(v) ? (v as ViciMessage) : undefined;
}

/** A list of a message ([] when absent or not a list). */
export function list(m: ViciMessage | undefined, key: string): readonly string[] {
  const v = m?.[key];
  return Array.isArray(v) ? (v as readonly string[]) : [];
}
