/**
 * Decoding of the Kafka responses a probe reads (part of the probe client,
 * kafka-client.ts): error codes per topic and partition of Produce, Fetch,
 * ListOffsets, Metadata, OffsetCommit, OffsetFetch, CreateTopics,
 * DeleteTopics and ApiVersions answers, in the classic (non-flexible)
 * versions the proxy reads, plus ApiVersions v3.
 *
 *   (apiKey, request version, frame) --decodeKafkaResponse--> {correlationId, topics, ...} | throws
 */
import { KafkaReader } from "./kafka-wire.js";

export interface KafkaTopicResult {
  readonly name: string;
  /** Metadata, CreateTopics, DeleteTopics: the topic's error; others: the first non-zero partition error, else 0. */
  readonly errorCode: number;
  readonly partitions: readonly { readonly partition: number; readonly errorCode: number }[];
}

export interface DecodedKafkaResponse {
  readonly correlationId: number;
  readonly topics: readonly KafkaTopicResult[];
  /** Top-level error (Fetch v7+, OffsetFetch v2+, ApiVersions). */
  readonly errorCode?: number;
  readonly brokers?: readonly { readonly nodeId: number; readonly host: string; readonly port: number }[];
  readonly apiVersions?: readonly { readonly apiKey: number; readonly min: number; readonly max: number }[];
}

type Body = Omit<DecodedKafkaResponse, "correlationId">;
const DECODERS: Readonly<Record<number, (r: KafkaReader, v: number) => Body>> = {
  0: (r, v) => ({ topics: produce(r, v) }),
  1: fetch,
  2: listOffsets,
  3: metadata,
  8: offsetCommit,
  9: offsetFetch,
  18: apiVersions,
  19: createTopics,
  20: deleteTopics,
};

/**
 * Decodes a response frame to a request of the given kind and version.
 * Strict: every byte must be accounted for, so a response of the wrong
 * shape is an error, not a silently wrong answer.
 */
export function decodeKafkaResponse(apiKey: number, v: number, frame: Buffer): DecodedKafkaResponse {
  const r = new KafkaReader(frame);
  if (r.i32() !== frame.length - 4) throw new Error("Cannot decode Kafka response: size prefix mismatch");
  const correlationId = r.i32();
  const decode = DECODERS[apiKey];
  if (!decode)
    throw new Error(`Cannot decode Kafka response: api key ${apiKey} is not supported by the probe client`);
  const out = { correlationId, ...decode(r, v) };
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

/** topics: [name, partitions: [partition_index, error_code, ...rest]] (`read` reads one partition) */
function partitionTopics(r: KafkaReader, min: number, read: () => Part): KafkaTopicResult[] {
  return (
    r.array(6, () => {
      const name = r.string() ?? "";
      return topic(name, r.array(min, read) ?? []);
    }) ?? []
  );
}

function listOffsets(r: KafkaReader, v: number): Body {
  if (v >= 2) r.i32(); // throttle_time_ms
  const topics = partitionTopics(r, 6, () => {
    const p = { partition: r.i32(), errorCode: r.i16() };
    if (v === 0) {
      r.array(8, () => r.i64()); // old_style_offsets
    } else {
      r.i64(); // timestamp
      r.i64(); // offset
    }
    if (v >= 4) r.i32(); // leader_epoch
    return p;
  });
  return { topics };
}

function offsetCommit(r: KafkaReader, v: number): Body {
  if (v >= 3) r.i32(); // throttle_time_ms
  return { topics: partitionTopics(r, 6, () => ({ partition: r.i32(), errorCode: r.i16() })) };
}

function offsetFetch(r: KafkaReader, v: number): Body {
  if (v >= 3) r.i32(); // throttle_time_ms
  const topics = partitionTopics(r, 16, () => {
    const partition = r.i32();
    r.i64(); // committed_offset
    if (v >= 5) r.i32(); // committed_leader_epoch
    r.string(); // metadata
    return { partition, errorCode: r.i16() };
  });
  return v >= 2 ? { topics, errorCode: r.i16() } : { topics };
}

/** CreateTopics and DeleteTopics: an error per topic, no partitions. */
function topicErrors(r: KafkaReader, message: boolean): KafkaTopicResult[] {
  return (
    r.array(4, () => {
      const t = { name: r.string() ?? "", errorCode: r.i16(), partitions: [] };
      if (message) r.string(); // error_message
      return t;
    }) ?? []
  );
}

function createTopics(r: KafkaReader, v: number): Body {
  if (v >= 2) r.i32(); // throttle_time_ms
  return { topics: topicErrors(r, v >= 1) };
}

function deleteTopics(r: KafkaReader, v: number): Body {
  if (v >= 1) r.i32(); // throttle_time_ms
  return { topics: topicErrors(r, false) };
}
