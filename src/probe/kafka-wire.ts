/**
 * Kafka wire primitives for the probe broker and client: a big-endian writer
 * that frames (4-byte size prefix) and a bounds-checked reader. Only the
 * classic (non-flexible) encodings, plus the unsigned varints that
 * ApiVersions v3 needs.
 *
 *   fields --KafkaWriter.framed()--> size-prefixed frame
 *   frame body --KafkaReader--> fields | throws KafkaShortRead
 */

export class KafkaShortRead extends Error {
  constructor() {
    super("Cannot read Kafka message: it is shorter than its fields");
  }
}

export class KafkaWriter {
  private readonly parts: Buffer[] = [];
  private fixed(n: number, f: (b: Buffer) => void): this {
    const b = Buffer.alloc(n);
    f(b);
    this.parts.push(b);
    return this;
  }
  i8(n: number): this {
    return this.fixed(1, (b) => b.writeInt8(n));
  }
  bool(v: boolean): this {
    return this.i8(v ? 1 : 0);
  }
  i16(n: number): this {
    return this.fixed(2, (b) => b.writeInt16BE(n));
  }
  i32(n: number): this {
    return this.fixed(4, (b) => b.writeInt32BE(n));
  }
  i64(n: bigint): this {
    return this.fixed(8, (b) => b.writeBigInt64BE(n));
  }
  /** Unsigned varint (flexible versions: compact lengths, tagged-field counts). */
  uvarint(n: number): this {
    const out: number[] = [];
    let v = n >>> 0;
    while (v >= 0x80) {
      out.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    out.push(v);
    this.parts.push(Buffer.from(out));
    return this;
  }
  string(s: string | null): this {
    if (s === null) return this.i16(-1);
    const b = Buffer.from(s, "utf8");
    return this.i16(b.length).raw(b);
  }
  compactString(s: string): this {
    const b = Buffer.from(s, "utf8");
    return this.uvarint(b.length + 1).raw(b);
  }
  bytes(b: Buffer | null): this {
    if (b === null) return this.i32(-1);
    return this.i32(b.length).raw(b);
  }
  array<T>(items: readonly T[] | null, each: (w: this, item: T) => void): this {
    if (items === null) return this.i32(-1);
    this.i32(items.length);
    for (const it of items) each(this, it);
    return this;
  }
  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  body(): Buffer {
    return Buffer.concat(this.parts);
  }
  framed(): Buffer {
    const body = this.body();
    const size = Buffer.alloc(4);
    size.writeInt32BE(body.length);
    return Buffer.concat([size, body]);
  }
}

export class KafkaReader {
  pos = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number): number {
    if (n < 0 || this.b.length - this.pos < n) throw new KafkaShortRead();
    const at = this.pos;
    this.pos += n;
    return at;
  }
  get left(): number {
    return this.b.length - this.pos;
  }
  i8(): number {
    return this.b.readInt8(this.need(1));
  }
  i16(): number {
    return this.b.readInt16BE(this.need(2));
  }
  i32(): number {
    return this.b.readInt32BE(this.need(4));
  }
  i64(): bigint {
    return this.b.readBigInt64BE(this.need(8));
  }
  uvarint(): number {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.b.readUInt8(this.need(1));
      v += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return v;
    }
    throw new KafkaShortRead();
  }
  string(): string | null {
    const len = this.i16();
    if (len === -1) return null;
    return this.b.toString("utf8", this.need(len), this.pos);
  }
  bytes(): Buffer | null {
    const len = this.i32();
    if (len === -1) return null;
    return this.b.subarray(this.need(len), this.pos);
  }
  /** An array of at most what the rest of the message can hold (`min` bytes per item); null stays null. */
  array<T>(min: number, each: () => T): T[] | null {
    const n = this.i32();
    if (n === -1) return null;
    if (n < -1 || n * min > this.left) throw new KafkaShortRead();
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(each());
    return out;
  }
  /** Skips a flexible version's tagged fields. */
  taggedFields(): void {
    const n = this.uvarint();
    for (let i = 0; i < n; i++) {
      this.uvarint();
      this.need(this.uvarint());
    }
  }
}
