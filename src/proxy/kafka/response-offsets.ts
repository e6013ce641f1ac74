/**
 * Denied answers for the consumer-group and topic-admin kinds (a part of
 * response.ts), in the response version matching the request's:
 *
 *   ListOffsets v0-v5, OffsetCommit v0-v7, OffsetFetch v0-v5: error 29 per partition
 *   CreateTopics v0-v4, DeleteTopics v0-v3: error 29 per topic
 *
 * OffsetFetch for every topic (v2+, null topics) has no topic to carry the
 * error: it goes in the top-level error code, so the client sees a failure
 * rather than "no committed offsets".
 *
 *   (KafkaRequest, Writer holding the correlation id) --deniedOther--> frame | undefined
 */
import { API, type KafkaRequest } from "./request.js";
import type { Writer } from "./wire.js";

export const TOPIC_AUTHORIZATION_FAILED = 29;

export function deniedOther(req: KafkaRequest, w: Writer): Buffer | undefined {
  const v = req.apiVersion;
  const topics = req.topics ?? [];
  const err = TOPIC_AUTHORIZATION_FAILED;
  const eachPartition = (f: (p: number) => void): void => {
    w.i32(topics.length);
    for (const t of topics) {
      w.string(t.name).i32(t.partitions.length);
      for (const p of t.partitions) f(p);
    }
  };
  const eachTopic = (f: () => void): void => {
    w.i32(topics.length);
    for (const t of topics) {
      w.string(t.name);
      f();
    }
  };
  switch (req.apiKey) {
    case API.listOffsets:
      if (v >= 2) w.i32(0); // throttle_time_ms
      eachPartition((p) => {
        w.i32(p).i16(err);
        if (v === 0)
          w.i32(0); // old_style_offsets: none
        else w.i64(-1n).i64(-1n); // timestamp, offset
        if (v >= 4) w.i32(-1); // leader_epoch
      });
      return w.framed();
    case API.offsetCommit:
      if (v >= 3) w.i32(0); // throttle_time_ms
      eachPartition((p) => w.i32(p).i16(err));
      return w.framed();
    case API.offsetFetch:
      if (v >= 3) w.i32(0); // throttle_time_ms
      eachPartition((p) => {
        w.i32(p).i64(-1n); // committed_offset
        if (v >= 5) w.i32(-1); // committed_leader_epoch
        w.nullString().i16(err); // metadata, error_code
      });
      if (v >= 2) w.i16(req.allTopics ? err : 0); // top-level error_code
      return w.framed();
    case API.createTopics:
      if (v >= 2) w.i32(0); // throttle_time_ms
      eachTopic(() => {
        w.i16(err);
        if (v >= 1) w.nullString(); // error_message
      });
      return w.framed();
    case API.deleteTopics:
      if (v >= 1) w.i32(0); // throttle_time_ms
      eachTopic(() => w.i16(err));
      return w.framed();
    default:
      return undefined;
  }
}
