/**
 * The answer to a Kafka request denied by policy: a response of the
 * request's own kind and version, every topic (and partition) carrying
 * TOPIC_AUTHORIZATION_FAILED, for the request's correlation id, as
 * Cilium's Kafka proxy answers. Written for every kind whose topics the
 * parser reads (Produce, Fetch, Metadata here; ListOffsets, OffsetCommit,
 * OffsetFetch, CreateTopics, DeleteTopics in response-offsets.ts).
 * Undefined when no response may be sent (Produce with acks=0) or the kind
 * has no topic-level error we can write: the caller then closes the connection.
 *
 *   KafkaRequest --deniedResponse--> size-prefixed response bytes | undefined
 */
import { API, type KafkaRequest } from "./request.js";
import { deniedOther, TOPIC_AUTHORIZATION_FAILED } from "./response-offsets.js";
import { Writer } from "./wire.js";

export { TOPIC_AUTHORIZATION_FAILED };

export function deniedResponse(req: KafkaRequest): Buffer | undefined {
  const v = req.apiVersion;
  const topics = req.topics ?? [];
  const w = new Writer().i32(req.correlationId);
  const err = TOPIC_AUTHORIZATION_FAILED;
  switch (req.apiKey) {
    case API.produce: {
      if (req.acks === 0) return undefined;
      w.i32(topics.length);
      for (const t of topics) {
        w.string(t.name).i32(t.partitions.length);
        for (const p of t.partitions) {
          w.i32(p).i16(err).i64(-1n);
          if (v >= 2) w.i64(-1n); // log_append_time_ms
          if (v >= 5) w.i64(-1n); // log_start_offset
          if (v >= 8) w.i32(0).nullString(); // record_errors, error_message
        }
      }
      if (v >= 1) w.i32(0); // throttle_time_ms
      return w.framed();
    }
    case API.fetch: {
      if (v >= 1) w.i32(0); // throttle_time_ms
      if (v >= 7) w.i16(0).i32(0); // error_code, session_id
      w.i32(topics.length);
      for (const t of topics) {
        w.string(t.name).i32(t.partitions.length);
        for (const p of t.partitions) {
          w.i32(p).i16(err).i64(-1n);
          if (v >= 4) w.i64(-1n); // last_stable_offset
          if (v >= 5) w.i64(-1n); // log_start_offset
          if (v >= 4) w.i32(-1); // aborted_transactions: null
          if (v >= 11) w.i32(-1); // preferred_read_replica
          w.i32(-1); // records: null
        }
      }
      return w.framed();
    }
    case API.metadata: {
      if (v >= 3) w.i32(0); // throttle_time_ms
      w.i32(0); // brokers
      if (v >= 2) w.nullString(); // cluster_id
      if (v >= 1) w.i32(-1); // controller_id
      w.i32(topics.length);
      for (const t of topics) {
        w.i16(err).string(t.name);
        if (v >= 1) w.i8(0); // is_internal
        w.i32(0); // partitions
        if (v >= 8) w.i32(-2147483648); // topic_authorized_operations
      }
      if (v >= 8) w.i32(-2147483648); // cluster_authorized_operations
      return w.framed();
    }
    default:
      return deniedOther(req, w);
  }
}
