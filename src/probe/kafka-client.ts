/**
 * A tiny Kafka client for tests and probes: builds real request frames
 * (Produce v0-v8, Fetch v0-v11, Metadata v0-v8, ApiVersions v0-v3, any other
 * key with an opaque body), reads size-prefixed responses off a socket and
 * decodes the answers a probe needs (error codes per topic and partition).
 *
 *   spec --encodeKafkaRequest--> frame --socket--> broker / proxy
 *   socket --KafkaResponseReader.next()--> frame --decodeKafkaResponse--> {correlationId, topics, ...}
 *
 * Produce records are opaque bytes (not a RecordBatch): fine for the probe
 * broker and the proxy, which never read them; a real broker would refuse them.
 */
import type { Socket } from "node:net";
import { KafkaReader, KafkaWriter } from "./kafka-wire.js";

export const KAFKA_API = { produce: 0, fetch: 1, metadata: 3, apiVersions: 18 } as const;

export interface KafkaRequestSpec {
  readonly apiKey: number;
  readonly apiVersion: number;
  readonly correlationId: number;
  readonly clientId?: string | null;
  /** Topics named by Produce/Fetch/Metadata; for Metadata, null = every topic. */
  readonly topics?: readonly string[] | null;
  /** Partitions per topic (default [0]). */
  readonly partitions?: readonly number[];
  /** Produce acks (default 1; 0 = no response). */
  readonly acks?: number;
  readonly records?: Buffer;
  /** Body for other API keys (default empty). */
  readonly body?: Buffer;
}

export function encodeKafkaRequest(spec: KafkaRequestSpec): Buffer {
  const v = spec.apiVersion;
  const w = new KafkaWriter().i16(spec.apiKey).i16(v).i32(spec.correlationId);
  w.string(spec.clientId === undefined ? "membrane-probe" : spec.clientId);
  const topics = spec.topics === undefined ? [] : spec.topics;
  const parts = spec.partitions ?? [0];
  switch (spec.apiKey) {
    case KAFKA_API.produce: {
      if (v >= 3) w.string(null); // transactional_id
      w.i16(spec.acks ?? 1).i32(1000);
      const records = spec.records ?? Buffer.from("membrane-probe");
      w.array(topics ?? [], (w, t) => w.string(t).array(parts, (w, p) => w.i32(p).bytes(records)));
      break;
    }
    case KAFKA_API.fetch: {
      w.i32(-1).i32(100).i32(1); // replica_id, max_wait_ms, min_bytes
      if (v >= 3) w.i32(1 << 20); // max_bytes
      if (v >= 4) w.i8(0); // isolation_level
      if (v >= 7) w.i32(0).i32(-1); // session_id, session_epoch (full fetch, no session)
      w.array(topics ?? [], (w, t) =>
        w.string(t).array(parts, (w, p) => {
          w.i32(p);
          if (v >= 9) w.i32(-1); // current_leader_epoch
          w.i64(0n); // fetch_offset
          if (v >= 5) w.i64(-1n); // log_start_offset
          w.i32(1 << 20); // partition_max_bytes
        }),
      );
      if (v >= 7) w.i32(0); // forgotten_topics_data
      if (v >= 11) w.string(""); // rack_id
      break;
    }
    case KAFKA_API.metadata:
      w.array(v === 0 ? (topics ?? []) : topics, (w, t) => w.string(t));
      if (v >= 4) w.bool(false); // allow_auto_topic_creation
      if (v >= 8) w.bool(false).bool(false); // include cluster / topic authorized operations
      break;
    case KAFKA_API.apiVersions:
      if (v >= 3) w.uvarint(0).compactString("membrane-probe").compactString("0.1.0").uvarint(0);
      break;
    default:
      if (spec.body) w.raw(spec.body);
  }
  return w.framed();
}

/** Writes the request frame to `socket` and returns the bytes written. */
export function kafkaRequest(socket: { write(b: Buffer): unknown }, spec: KafkaRequestSpec): Buffer {
  const frame = encodeKafkaRequest(spec);
  socket.write(frame);
  return frame;
}

export interface KafkaResponseFrame {
  readonly correlationId: number;
  /** The whole frame, size prefix included. */
  readonly bytes: Buffer;
}

export type KafkaReadResult = KafkaResponseFrame | "closed" | "timeout";

/** Reads size-prefixed responses off one socket, in order. */
export class KafkaResponseReader {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(
    socket: Socket,
    private readonly maxFrameBytes = 64 * 1024 * 1024,
  ) {
    socket.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    const end = (): void => {
      this.ended = true;
      this.wake?.();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", end);
  }

  private take(): KafkaResponseFrame | "closed" | undefined {
    if (this.buf.length >= 4) {
      const size = this.buf.readInt32BE(0);
      if (size < 4 || size > this.maxFrameBytes) return "closed";
      if (this.buf.length >= 4 + size) {
        const bytes = this.buf.subarray(0, 4 + size);
        this.buf = this.buf.subarray(4 + size);
        return { correlationId: bytes.readInt32BE(4), bytes };
      }
    }
    return this.ended ? "closed" : undefined;
  }

  next(timeoutMs = 3000): Promise<KafkaReadResult> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve("timeout");
      }, timeoutMs);
      const attempt = (): void => {
        const r = this.take();
        if (r === undefined) return;
        this.wake = undefined;
        clearTimeout(timer);
        resolve(r);
      };
      this.wake = attempt;
      attempt();
    });
  }
}

const readers = new WeakMap<Socket, KafkaResponseReader>();

/** The next response on `socket` (one reader per socket, created at the first call). */
export function readKafkaResponse(socket: Socket, timeoutMs?: number): Promise<KafkaReadResult> {
  let r = readers.get(socket);
  if (!r) readers.set(socket, (r = new KafkaResponseReader(socket)));
  return r.next(timeoutMs);
}

export interface KafkaTopicResult {
  readonly name: string;
  /** Metadata: the topic's error; Produce/Fetch: the first non-zero partition error, else 0. */
  readonly errorCode: number;
  readonly partitions: readonly { readonly partition: number; readonly errorCode: number }[];
}

export interface DecodedKafkaResponse {
  readonly correlationId: number;
  readonly topics: readonly KafkaTopicResult[];
  /** Top-level error (Fetch v7+, ApiVersions). */
  readonly errorCode?: number;
  readonly brokers?: readonly { readonly nodeId: number; readonly host: string; readonly port: number }[];
  readonly apiVersions?: readonly { readonly apiKey: number; readonly min: number; readonly max: number }[];
}

/**
 * Decodes a Produce, Fetch, Metadata or ApiVersions response frame of the
 * given request version. Strict: every byte must be accounted for, so a
 * response of the wrong shape is an error, not a silently wrong answer.
 */
export function decodeKafkaResponse(apiKey: number, v: number, frame: Buffer): DecodedKafkaResponse {
  const r = new KafkaReader(frame);
  if (r.i32() !== frame.length - 4) throw new Error("Cannot decode Kafka response: size prefix mismatch");
  const correlationId = r.i32();
  let out: DecodedKafkaResponse;
  if (apiKey === KAFKA_API.produce) out = { correlationId, topics: produce(r, v) };
  else if (apiKey === KAFKA_API.fetch) out = { correlationId, ...fetch(r, v) };
  else if (apiKey === KAFKA_API.metadata) out = { correlationId, ...metadata(r, v) };
  else if (apiKey === KAFKA_API.apiVersions) out = { correlationId, ...apiVersions(r, v) };
  else
    throw new Error(`Cannot decode Kafka response: api key ${apiKey} is not supported by the probe client`);
  if (r.left !== 0) throw new Error(`Cannot decode Kafka response: ${r.left} bytes left over`);
  return out;
}

type Part = { partition: number; errorCode: number };
const topic = (name: string, partitions: Part[]): KafkaTopicResult => ({
  name,
  partitions,
  errorCode: partitions.find((p) => p.errorCode !== 0)?.errorCode ?? 0,
});

function produce(r: KafkaReader, v: number): KafkaTopicResult[] {
  const topics =
    r.array(6, () => {
      const name = r.string() ?? "";
      const parts =
        r.array(14, () => {
          const p = { partition: r.i32(), errorCode: r.i16() };
          r.i64(); // base_offset
          if (v >= 2) r.i64(); // log_append_time_ms
          if (v >= 5) r.i64(); // log_start_offset
          if (v >= 8) {
            r.array(6, () => [r.i32(), r.string()]); // record_errors
            r.string(); // error_message
          }
          return p;
        }) ?? [];
      return topic(name, parts);
    }) ?? [];
  if (v >= 1) r.i32(); // throttle_time_ms
  return topics;
}

function fetch(r: KafkaReader, v: number): { topics: KafkaTopicResult[]; errorCode?: number } {
  if (v >= 1) r.i32(); // throttle_time_ms
  let errorCode: number | undefined;
  if (v >= 7) {
    errorCode = r.i16();
    r.i32(); // session_id
  }
  const topics =
    r.array(6, () => {
      const name = r.string() ?? "";
      const parts =
        r.array(18, () => {
          const p = { partition: r.i32(), errorCode: r.i16() };
          r.i64(); // high_watermark
          if (v >= 4) r.i64(); // last_stable_offset
          if (v >= 5) r.i64(); // log_start_offset
          if (v >= 4) r.array(16, () => [r.i64(), r.i64()]); // aborted_transactions
          if (v >= 11) r.i32(); // preferred_read_replica
          r.bytes(); // records
          return p;
        }) ?? [];
      return topic(name, parts);
    }) ?? [];
  return errorCode === undefined ? { topics } : { topics, errorCode };
}

function metadata(r: KafkaReader, v: number): Pick<DecodedKafkaResponse, "topics" | "brokers"> {
  if (v >= 3) r.i32(); // throttle_time_ms
  const brokers =
    r.array(10, () => {
      const b = { nodeId: r.i32(), host: r.string() ?? "", port: r.i32() };
      if (v >= 1) r.string(); // rack
      return b;
    }) ?? [];
  if (v >= 2) r.string(); // cluster_id
  if (v >= 1) r.i32(); // controller_id
  const topics =
    r.array(6, () => {
      const errorCode = r.i16();
      const name = r.string() ?? "";
      if (v >= 1) r.i8(); // is_internal
      const partitions =
        r.array(18, () => {
          const p = { errorCode: r.i16(), partition: r.i32() };
          r.i32(); // leader_id
          if (v >= 7) r.i32(); // leader_epoch
          r.array(4, () => r.i32()); // replica_nodes
          r.array(4, () => r.i32()); // isr_nodes
          if (v >= 5) r.array(4, () => r.i32()); // offline_replicas
          return p;
        }) ?? [];
      if (v >= 8) r.i32(); // topic_authorized_operations
      return { name, errorCode, partitions };
    }) ?? [];
  if (v >= 8) r.i32(); // cluster_authorized_operations
  return { topics, brokers };
}

function apiVersions(
  r: KafkaReader,
  v: number,
): Pick<DecodedKafkaResponse, "topics" | "errorCode" | "apiVersions"> {
  const errorCode = r.i16();
  // An UNSUPPORTED_VERSION (35) answer is always written in version 0.
  const flexible = v >= 3 && errorCode !== 35;
  const n = flexible ? r.uvarint() - 1 : r.i32();
  if (n < 0 || n * 6 > r.left) throw new Error("Cannot decode Kafka response: bad ApiVersions count");
  const list: { apiKey: number; min: number; max: number }[] = [];
  for (let i = 0; i < n; i++) {
    list.push({ apiKey: r.i16(), min: r.i16(), max: r.i16() });
    if (flexible) r.taggedFields();
  }
  if (v >= 1 && errorCode !== 35) r.i32(); // throttle_time_ms
  if (flexible) r.taggedFields();
  return { topics: [], errorCode, apiVersions: list };
}
