/**
 * Kafka requests as the proxy judges them: the header (apiKey, apiVersion,
 * correlationId, clientID) of every request, and the topics of Produce
 * (v0-v8), Fetch (v0-v11) and Metadata (v0-v8).
 *
 *   bytes --parseKafkaRequest--> incomplete | error(reason) | {request, length}
 *
 * Bounded and hostile-input safe: the 4-byte size prefix is checked against
 * `maxFrameBytes` before anything is buffered, every length against the
 * frame. Versions of those three kinds we cannot read (the flexible
 * encodings: Produce v9+, Fetch v12+, Metadata v9+) are an error, so the
 * caller refuses them rather than guess their topics (fail closed).
 */

export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

export const API = { produce: 0, fetch: 1, metadata: 3 } as const;
/** Highest version whose topics we can read, per API key. */
export const MAX_TOPIC_VERSION: Readonly<Record<number, number>> = { 0: 8, 1: 11, 3: 8 };

export interface KafkaTopic {
  readonly name: string;
  readonly partitions: readonly number[];
}

export interface KafkaRequest {
  readonly apiKey: number;
  readonly apiVersion: number;
  readonly correlationId: number;
  readonly clientID: string | null;
  /** Topics the request names; undefined for request kinds whose body is not read. */
  readonly topics?: readonly KafkaTopic[];
  /** Metadata for every topic (null or, in v0, empty list). */
  readonly allTopics?: boolean;
  /** Produce: acks 0 means the broker sends no response. */
  readonly acks?: number;
}

export type KafkaParseResult =
  | { readonly kind: "incomplete" }
  | { readonly kind: "error"; readonly reason: string }
  | { readonly kind: "ok"; readonly request: KafkaRequest; readonly length: number };

class Short extends Error {}

/** A bounds-checked reader; reading past the end throws Short (caught below). */
class Reader {
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

export function parseKafkaRequest(buf: Buffer, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): KafkaParseResult {
  if (buf.length < 4) return { kind: "incomplete" };
  const size = buf.readInt32BE(0);
  if (size < 8 || size > maxFrameBytes) return { kind: "error", reason: `request size ${size}` };
  if (buf.length < 4 + size) return { kind: "incomplete" };
  const r = new Reader(buf, 4, 4 + size);
  try {
    const apiKey = r.i16();
    const apiVersion = r.i16();
    const correlationId = r.i32();
    if (apiKey < 0 || apiVersion < 0) return { kind: "error", reason: "negative api key or version" };
    const clientID = r.nullableString();
    const head = { apiKey, apiVersion, correlationId, clientID };
    const max = MAX_TOPIC_VERSION[apiKey];
    if (max === undefined) return { kind: "ok", request: head, length: 4 + size };
    if (apiVersion > max)
      return { kind: "error", reason: `api key ${apiKey} version ${apiVersion} is not supported` };
    const body =
      apiKey === API.produce
        ? produce(r, apiVersion)
        : apiKey === API.fetch
          ? fetch(r, apiVersion)
          : metadata(r, apiVersion);
    return { kind: "ok", request: { ...head, ...body }, length: 4 + size };
  } catch (e) {
    if (e instanceof Short) return { kind: "error", reason: "request shorter than its fields" };
    throw e;
  }
}

function produce(r: Reader, v: number): Partial<KafkaRequest> {
  if (v >= 3) r.nullableString(); // transactional_id
  const acks = r.i16();
  r.i32(); // timeout
  const topics: KafkaTopic[] = [];
  const n = r.count(6);
  for (let i = 0; i < n; i++) {
    const name = r.string();
    const partitions: number[] = [];
    const pn = r.count(8);
    for (let j = 0; j < pn; j++) {
      partitions.push(r.i32());
      r.bytes(); // records
    }
    topics.push({ name, partitions });
  }
  return { acks, topics };
}

function fetch(r: Reader, v: number): Partial<KafkaRequest> {
  r.skip(12); // replica_id, max_wait_ms, min_bytes
  if (v >= 3) r.skip(4); // max_bytes
  if (v >= 4) r.skip(1); // isolation_level
  if (v >= 7) r.skip(8); // session_id, session_epoch
  const partSize = (v >= 9 ? 4 : 0) + 16 + (v >= 5 ? 8 : 0);
  const topics: KafkaTopic[] = [];
  const n = r.count(6);
  for (let i = 0; i < n; i++) {
    const name = r.string();
    const partitions: number[] = [];
    const pn = r.count(partSize);
    for (let j = 0; j < pn; j++) {
      partitions.push(r.i32());
      r.skip(partSize - 4);
    }
    topics.push({ name, partitions });
  }
  return { topics };
}

function metadata(r: Reader, v: number): Partial<KafkaRequest> {
  const n = r.count(2);
  const topics: KafkaTopic[] = [];
  for (let i = 0; i < n; i++) topics.push({ name: r.string(), partitions: [] });
  return { topics, allTopics: n === -1 || (v === 0 && n === 0) };
}
