/**
 * Kafka requests as the proxy judges them: the header (apiKey, apiVersion,
 * correlationId, clientID) of every request, and the topics of the kinds
 * Cilium judges by topic, in their classic (non-flexible) versions:
 *
 *   Produce v0-v8, Fetch v0-v11, ListOffsets v0-v5, Metadata v0-v8,
 *   OffsetCommit v0-v7, OffsetFetch v0-v5, CreateTopics v0-v4, DeleteTopics v0-v3
 *
 *   bytes --parseKafkaRequest--> incomplete | error(reason) | {request, length}
 *
 * Bounded and hostile-input safe: the 4-byte size prefix is checked against
 * `maxFrameBytes` before anything is buffered, every length against the
 * frame. Newer versions of those kinds (the flexible encodings) are an
 * error, so the caller refuses them rather than guess their topics (fail
 * closed); the ApiVersions clamp (apiversions.ts) keeps clients below them.
 * Other kinds are read up to the client id only.
 */
import { createTopics, deleteTopics } from "./request-admin.js";
import { listOffsets, offsetCommit, offsetFetch } from "./request-offsets.js";
import { Malformed, Reader, Short } from "./wire.js";

export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

export const API = {
  produce: 0,
  fetch: 1,
  listOffsets: 2,
  metadata: 3,
  offsetCommit: 8,
  offsetFetch: 9,
  createTopics: 19,
  deleteTopics: 20,
} as const;
/** Highest version whose topics we can read, per API key (the last before the flexible encoding). */
export const MAX_TOPIC_VERSION: Readonly<Record<number, number>> = {
  [API.produce]: 8,
  [API.fetch]: 11,
  [API.listOffsets]: 5,
  [API.metadata]: 8,
  [API.offsetCommit]: 7,
  [API.offsetFetch]: 5,
  [API.createTopics]: 4,
  [API.deleteTopics]: 3,
};

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
  /** Metadata (null or, in v0, empty list) or OffsetFetch v2+ (null) for every topic. */
  readonly allTopics?: boolean;
  /** Produce: acks 0 means the broker sends no response. */
  readonly acks?: number;
}

export type KafkaParseResult =
  | { readonly kind: "incomplete" }
  | { readonly kind: "error"; readonly reason: string }
  | { readonly kind: "ok"; readonly request: KafkaRequest; readonly length: number };

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
    const body = readBody(r, apiKey, apiVersion);
    return { kind: "ok", request: { ...head, ...body }, length: 4 + size };
  } catch (e) {
    if (e instanceof Short) return { kind: "error", reason: "request shorter than its fields" };
    if (e instanceof Malformed) return { kind: "error", reason: e.message };
    throw e;
  }
}

/** The body of a kind listed in MAX_TOPIC_VERSION, in a version it allows. */
function readBody(r: Reader, apiKey: number, v: number): Partial<KafkaRequest> {
  switch (apiKey) {
    case API.produce:
      return produce(r, v);
    case API.fetch:
      return fetch(r, v);
    case API.metadata:
      return metadata(r, v);
    case API.listOffsets:
      return listOffsets(r, v);
    case API.offsetCommit:
      return offsetCommit(r, v);
    case API.offsetFetch:
      return offsetFetch(r, v);
    case API.createTopics:
      return createTopics(r);
    case API.deleteTopics:
      return deleteTopics(r);
    default:
      throw new Malformed(`api key ${apiKey} has no body reader`);
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
