/**
 * A tiny Kafka client for tests and probes: builds real request frames
 * (Produce v0-v8, Fetch v0-v11, ListOffsets v0-v5, Metadata v0-v8,
 * OffsetCommit v0-v7, OffsetFetch v0-v5, ApiVersions v0-v3, CreateTopics
 * v0-v4, DeleteTopics v0-v3, any other key with an opaque body), reads
 * size-prefixed responses off a socket and decodes the answers a probe
 * needs (error codes per topic and partition; kafka-decode.ts).
 *
 *   spec --encodeKafkaRequest--> frame --socket--> broker / proxy
 *   socket --KafkaResponseReader.next()--> frame --decodeKafkaResponse--> {correlationId, topics, ...}
 *
 * Produce records are opaque bytes (not a RecordBatch): fine for the probe
 * broker and the proxy, which never read them; a real broker would refuse them.
 */
import type { Socket } from "node:net";
import { KafkaWriter } from "./kafka-wire.js";

export { decodeKafkaResponse, type DecodedKafkaResponse, type KafkaTopicResult } from "./kafka-decode.js";

export const KAFKA_API = {
  produce: 0,
  fetch: 1,
  listOffsets: 2,
  metadata: 3,
  offsetCommit: 8,
  offsetFetch: 9,
  apiVersions: 18,
  createTopics: 19,
  deleteTopics: 20,
} as const;

export interface KafkaRequestSpec {
  readonly apiKey: number;
  readonly apiVersion: number;
  readonly correlationId: number;
  readonly clientId?: string | null;
  /** Topics the request names; for Metadata (v1+) and OffsetFetch (v2+), null = every topic. */
  readonly topics?: readonly string[] | null;
  /** Partitions per topic (default [0]). */
  readonly partitions?: readonly number[];
  /** Produce acks (default 1; 0 = no response). */
  readonly acks?: number;
  readonly records?: Buffer;
  /** Consumer group of OffsetCommit / OffsetFetch (default "membrane-probe"). */
  readonly groupId?: string;
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
    case KAFKA_API.listOffsets:
      w.i32(-1); // replica_id
      if (v >= 2) w.i8(0); // isolation_level
      w.array(topics ?? [], (w, t) =>
        w.string(t).array(parts, (w, p) => {
          w.i32(p);
          if (v >= 4) w.i32(-1); // current_leader_epoch
          w.i64(-1n); // timestamp: latest
          if (v === 0) w.i32(1); // max_num_offsets
        }),
      );
      break;
    case KAFKA_API.offsetCommit:
      w.string(spec.groupId ?? "membrane-probe");
      if (v >= 1) w.i32(-1).string(""); // generation_id, member_id
      if (v >= 7) w.string(null); // group_instance_id
      if (v >= 2 && v <= 4) w.i64(-1n); // retention_time_ms
      w.array(topics ?? [], (w, t) =>
        w.string(t).array(parts, (w, p) => {
          w.i32(p).i64(0n); // partition_index, committed_offset
          if (v >= 6) w.i32(-1); // committed_leader_epoch
          if (v === 1) w.i64(-1n); // commit_timestamp
          w.string(null); // committed_metadata
        }),
      );
      break;
    case KAFKA_API.offsetFetch:
      w.string(spec.groupId ?? "membrane-probe");
      w.array(topics, (w, t) => w.string(t).array(parts, (w, p) => w.i32(p)));
      break;
    case KAFKA_API.createTopics:
      w.array(topics ?? [], (w, t) => {
        w.string(t).i32(parts.length).i16(1); // num_partitions, replication_factor
        w.array([], () => undefined).array([], () => undefined); // assignments, configs
      });
      w.i32(1000); // timeout_ms
      if (v >= 1) w.bool(false); // validate_only
      break;
    case KAFKA_API.deleteTopics:
      w.array(topics ?? [], (w, t) => w.string(t)).i32(1000); // topic_names, timeout_ms
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
