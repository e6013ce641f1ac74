/**
 * Kafka wire primitives of the proxy: a bounds-checked reader for request
 * bodies (reading past the frame throws Short; a field the schema forbids
 * throws Malformed; parseKafkaRequest turns both into an error result) and
 * a big-endian writer for the answers we write ourselves.
 *
 *   frame bytes --Reader--> fields | Short | Malformed
 *   fields --Writer.framed()--> size-prefixed frame
 *
 * Only the classic (non-flexible) encodings.
 */

/** The frame ended before the field did, or a count the frame cannot hold. */
export class Short extends Error {}

/** A field value the schema does not allow (e.g. a null that is not nullable in this version). */
export class Malformed extends Error {}

export class Reader {
  pos: number;
  constructor(
    private readonly b: Buffer,
    start: number,
    private readonly end: number,
  ) {
    this.pos = start;
  }
  private need(n: number): number {
    if (n < 0 || this.end - this.pos < n) throw new Short();
    const at = this.pos;
    this.pos += n;
    return at;
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
  skip(n: number): void {
    this.need(n);
  }
  nullableString(): string | null {
    const len = this.i16();
    if (len === -1) return null;
    return this.b.toString("utf8", this.need(len), this.pos);
  }
  string(): string {
    const s = this.nullableString();
    if (s === null) throw new Short();
    return s;
  }
  /** Array length; -1 (null) returned as is. */
  count(min: number): number {
    const n = this.i32();
    // Every element takes at least `min` bytes: a count the frame cannot hold is malformed.
    if (n < -1 || (n > 0 && n * min > this.end - this.pos)) throw new Short();
    return n;
  }
  bytes(): void {
    const len = this.i32();
    if (len !== -1) this.need(len);
  }
}

/** Big-endian Kafka encoder (the proxy's own answers; the probe broker and client use it too). */
export class Writer {
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
  nullString(): this {
    return this.i16(-1);
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
