/**
 * Topics of the topic-admin requests (a part of request.ts): CreateTopics
 * v0-v4 and DeleteTopics v0-v3, the versions before the flexible encoding
 * (schemas: Kafka's clients/src/main/resources/common/message). Their
 * topics carry no partitions we judge: `partitions` is empty.
 *
 *   body (after the client id) --createTopics | deleteTopics--> {topics}
 */
import type { KafkaRequest, KafkaTopic } from "./request.js";
import type { Reader } from "./wire.js";

export function createTopics(r: Reader): Partial<KafkaRequest> {
  const topics: KafkaTopic[] = [];
  // name, num_partitions, replication_factor, assignments, configs
  const n = r.count(16);
  for (let i = 0; i < n; i++) {
    topics.push({ name: r.string(), partitions: [] });
    r.skip(6); // num_partitions, replication_factor
    const an = r.count(8);
    for (let j = 0; j < an; j++) {
      r.skip(4); // partition_index
      r.skip(4 * Math.max(0, r.count(4))); // broker_ids
    }
    const cn = r.count(4);
    for (let j = 0; j < cn; j++) {
      r.string(); // config name
      r.nullableString(); // config value
    }
  }
  return { topics };
}

export function deleteTopics(r: Reader): Partial<KafkaRequest> {
  const topics: KafkaTopic[] = [];
  const n = r.count(2);
  for (let i = 0; i < n; i++) topics.push({ name: r.string(), partitions: [] });
  return { topics };
}
