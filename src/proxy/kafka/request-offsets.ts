/**
 * Topics of the consumer-group requests (a part of request.ts): ListOffsets
 * v0-v5, OffsetCommit v0-v7, OffsetFetch v0-v5, the versions before the
 * flexible encoding (schemas: Kafka's clients/src/main/resources/common/message).
 *
 *   body (after the client id) --listOffsets | offsetCommit | offsetFetch--> {topics, allTopics?}
 *
 * Every field up to the last topic is read (bounds-checked by Reader);
 * the fields after the topics are not.
 */
import type { KafkaRequest, KafkaTopic } from "./request.js";
import { Malformed, type Reader } from "./wire.js";

/** topics: [name, partitions: [partition_index, <fixed tail of `tail` bytes>]] */
function topicsWithPartitions(r: Reader, min: number, tail: (r: Reader) => void): KafkaTopic[] {
  const topics: KafkaTopic[] = [];
  const n = r.count(6);
  for (let i = 0; i < n; i++) {
    const name = r.string();
    const partitions: number[] = [];
    const pn = r.count(min);
    for (let j = 0; j < pn; j++) {
      partitions.push(r.i32());
      tail(r);
    }
    topics.push({ name, partitions });
  }
  return topics;
}

export function listOffsets(r: Reader, v: number): Partial<KafkaRequest> {
  r.skip(4); // replica_id
  if (v >= 2) r.skip(1); // isolation_level
  // current_leader_epoch (v4+), timestamp, max_num_offsets (v0)
  const tail = (v >= 4 ? 4 : 0) + 8 + (v === 0 ? 4 : 0);
  return { topics: topicsWithPartitions(r, 4 + tail, (r) => r.skip(tail)) };
}

export function offsetCommit(r: Reader, v: number): Partial<KafkaRequest> {
  r.string(); // group_id
  if (v >= 1) {
    r.skip(4); // generation_id
    r.string(); // member_id
  }
  if (v >= 7) r.nullableString(); // group_instance_id
  if (v >= 2 && v <= 4) r.skip(8); // retention_time_ms
  // committed_offset, committed_leader_epoch (v6+), commit_timestamp (v1)
  const fixed = 8 + (v >= 6 ? 4 : 0) + (v === 1 ? 8 : 0);
  const topics = topicsWithPartitions(r, 4 + fixed + 2, (r) => {
    r.skip(fixed);
    r.nullableString(); // committed_metadata
  });
  return { topics };
}

export function offsetFetch(r: Reader, v: number): Partial<KafkaRequest> {
  r.string(); // group_id
  const n = r.count(6);
  if (n === -1 && v < 2)
    throw new Malformed(`OffsetFetch v${v} with null topics (all topics needs v2 or later)`);
  const topics: KafkaTopic[] = [];
  for (let i = 0; i < n; i++) {
    const name = r.string();
    const partitions: number[] = [];
    const pn = r.count(4);
    for (let j = 0; j < pn; j++) partitions.push(r.i32());
    topics.push({ name, partitions });
  }
  return { topics, allTopics: n === -1 };
}
