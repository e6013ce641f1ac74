/**
 * Kafka wire primitives for the probe broker and client: the proxy's writer
 * (frames with a 4-byte size prefix) and a bounds-checked reader of answers. Only the
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

/** The proxy's encoder, under the probe's name. */
export { Writer as KafkaWriter } from "../proxy/kafka/wire.js";

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
