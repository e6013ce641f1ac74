/**
 * A small protocol-speaking Kafka broker for tests and datapath probes: it
 * answers ApiVersions (v0-v3) and every kind whose topics the proxy reads,
 * in the versions it reads (Produce, Fetch, ListOffsets, Metadata,
 * OffsetCommit, OffsetFetch, CreateTopics, DeleteTopics: MAX_TOPIC_VERSION)
 * with success, so a client can tell a real answer from the proxy's
 * TOPIC_AUTHORIZATION_FAILED, and records every request it read.
 *
 *   client --frames--> parseKafkaRequest --> received[] + response (error 0)
 *
 * Anything else (other API keys, versions we cannot read, malformed frames)
 * is recorded when its header could be read, and the connection is closed.
 * It stores no records: Produce gets offsets, Fetch gets empty record sets,
 * ListOffsets the next offset; OffsetCommit is acknowledged but not kept
 * (OffsetFetch answers -1, no committed offset). CreateTopics adds a topic
 * (partition 0) to what Metadata lists for every topic, DeleteTopics removes it.
 */
import net from "node:net";
import type { AddressInfo } from "node:net";
import {
  DEFAULT_MAX_FRAME_BYTES,
  MAX_TOPIC_VERSION,
  parseKafkaRequest,
  type KafkaRequest,
} from "../proxy/kafka/request.js";
import { KafkaWriter } from "./kafka-wire.js";

export interface KafkaReceived {
  readonly apiKey: number;
  readonly apiVersion: number;
  readonly correlationId: number;
  readonly clientID: string | null;
  readonly topics: readonly string[];
}

export interface KafkaBroker {
  readonly port: number;
  readonly received: KafkaReceived[];
  close(): Promise<void>;
}

export interface KafkaBrokerParams {
  readonly host: string;
  /** 0 = any free port. */
  readonly port: number;
  /** Version ranges to advertise instead of ours (tests of version negotiation); answers stay ours. */
  readonly advertise?: Readonly<Record<number, readonly [number, number]>>;
  readonly maxFrameBytes?: number;
}

const NODE_ID = 1;
const UNSUPPORTED_VERSION = 35;
const MAX_API_VERSIONS = 3;

export async function startKafkaBroker(params: KafkaBrokerParams): Promise<KafkaBroker> {
  const received: KafkaReceived[] = [];
  const sockets = new Set<net.Socket>();
  const offsets = new Map<string, bigint>();
  const versions: Record<number, readonly [number, number]> = {
    ...Object.fromEntries(Object.entries(MAX_TOPIC_VERSION).map(([k, max]) => [k, [0, max] as const])),
    18: [0, MAX_API_VERSIONS],
    ...params.advertise,
  };
  let port = params.port;
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => sock.destroy());
    sock.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    sock.on("data", (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      const out: Buffer[] = [];
      for (;;) {
        const r = parseKafkaRequest(buf, params.maxFrameBytes);
        if (r.kind === "incomplete") break;
        if (r.kind === "error") {
          recordHeader(buf, received, params.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
          return close(sock, out);
        }
        buf = buf.subarray(r.length);
        const req = r.request;
        received.push({
          apiKey: req.apiKey,
          apiVersion: req.apiVersion,
          correlationId: req.correlationId,
          clientID: req.clientID,
          topics: (req.topics ?? []).map((t) => t.name),
        });
        const ctx = { host: params.host, port, offsets, versions };
        const answer = respond(req, ctx);
        if (answer === "close") return close(sock, out);
        if (answer) out.push(answer);
      }
      if (out.length > 0) sock.write(Buffer.concat(out));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(params.port, params.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  return {
    port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function close(sock: net.Socket, out: Buffer[]): void {
  if (out.length > 0) sock.write(Buffer.concat(out));
  sock.end();
}

/** A request we will not answer is still recorded when its frame and header are readable. */
function recordHeader(buf: Buffer, received: KafkaReceived[], max: number): void {
  const size = buf.length >= 12 ? buf.readInt32BE(0) : -1;
  if (size < 8 || size > max || buf.readInt16BE(4) < 0 || buf.readInt16BE(6) < 0) return;
  received.push({
    apiKey: buf.readInt16BE(4),
    apiVersion: buf.readInt16BE(6),
    correlationId: buf.readInt32BE(8),
    clientID: null,
    topics: [],
  });
}

/** The topic of an offsets key `topic/partition`. */
const topicOf = (key: string): string => key.replace(/\/\d+$/, "");

interface Ctx {
  readonly host: string;
  readonly port: number;
  readonly offsets: Map<string, bigint>;
  readonly versions: Readonly<Record<number, readonly [number, number]>>;
}

/** Response frame, undefined for none (Produce acks=0), "close" for requests we do not serve. */
function respond(req: KafkaRequest, ctx: Ctx): Buffer | undefined | "close" {
  const v = req.apiVersion;
  const w = new KafkaWriter().i32(req.correlationId);
  const topics = req.topics ?? [];
  switch (req.apiKey) {
    case 18: {
      // Too new a version: answer in v0 with UNSUPPORTED_VERSION and our ranges (KIP-511).
      const flexible = v >= 3 && v <= MAX_API_VERSIONS;
      w.i16(v > MAX_API_VERSIONS ? UNSUPPORTED_VERSION : 0);
      const keys = Object.entries(ctx.versions);
      if (flexible) w.uvarint(keys.length + 1);
      else w.i32(keys.length);
      for (const [k, [min, max]] of keys) {
        w.i16(Number(k)).i16(min).i16(max);
        if (flexible) w.uvarint(0);
      }
      if (v >= 1 && v <= MAX_API_VERSIONS) w.i32(0); // throttle_time_ms
      if (flexible) w.uvarint(0);
      return w.framed();
    }
    case 0: {
      if (req.acks === 0) return undefined;
      w.array(topics, (w, t) =>
        w.string(t.name).array(t.partitions, (w, p) => {
          const key = `${t.name}/${p}`;
          const base = ctx.offsets.get(key) ?? 0n;
          ctx.offsets.set(key, base + 1n);
          w.i32(p).i16(0).i64(base);
          if (v >= 2) w.i64(-1n); // log_append_time_ms
          if (v >= 5) w.i64(0n); // log_start_offset
          if (v >= 8) w.array([], () => undefined).string(null); // record_errors, error_message
        }),
      );
      if (v >= 1) w.i32(0); // throttle_time_ms
      return w.framed();
    }
    case 1: {
      if (v >= 1) w.i32(0); // throttle_time_ms
      if (v >= 7) w.i16(0).i32(0); // error_code, session_id
      w.array(topics, (w, t) =>
        w.string(t.name).array(t.partitions, (w, p) => {
          const hw = ctx.offsets.get(`${t.name}/${p}`) ?? 0n;
          w.i32(p).i16(0).i64(hw);
          if (v >= 4) w.i64(hw); // last_stable_offset
          if (v >= 5) w.i64(0n); // log_start_offset
          if (v >= 4) w.array([], () => undefined); // aborted_transactions
          if (v >= 11) w.i32(-1); // preferred_read_replica
          w.bytes(Buffer.alloc(0)); // records
        }),
      );
      return w.framed();
    }
    case 3: {
      if (v >= 3) w.i32(0); // throttle_time_ms
      w.array([NODE_ID], (w, id) => {
        w.i32(id).string(ctx.host).i32(ctx.port);
        if (v >= 1) w.string(null); // rack
      });
      if (v >= 2) w.string("membrane-probe"); // cluster_id
      if (v >= 1) w.i32(NODE_ID); // controller_id
      const names = req.allTopics ? [...new Set([...ctx.offsets.keys()].map(topicOf))] : [];
      w.array(req.allTopics ? names : topics.map((t) => t.name), (w, name) => {
        w.i16(0).string(name);
        if (v >= 1) w.bool(false); // is_internal
        w.array([0], (w, p) => {
          w.i16(0).i32(p).i32(NODE_ID);
          if (v >= 7) w.i32(0); // leader_epoch
          w.array([NODE_ID], (w, n) => w.i32(n)); // replica_nodes
          w.array([NODE_ID], (w, n) => w.i32(n)); // isr_nodes
          if (v >= 5) w.array([], () => undefined); // offline_replicas
        });
        if (v >= 8) w.i32(-2147483648); // topic_authorized_operations: not requested
      });
      if (v >= 8) w.i32(-2147483648); // cluster_authorized_operations
      return w.framed();
    }
    case 2: {
      if (v >= 2) w.i32(0); // throttle_time_ms
      w.array(topics, (w, t) =>
        w.string(t.name).array(t.partitions, (w, p) => {
          const next = ctx.offsets.get(`${t.name}/${p}`) ?? 0n;
          w.i32(p).i16(0);
          if (v === 0)
            w.array([next], (w, o) => w.i64(o)); // old_style_offsets
          else w.i64(-1n).i64(next); // timestamp, offset
          if (v >= 4) w.i32(0); // leader_epoch
        }),
      );
      return w.framed();
    }
    case 8: {
      if (v >= 3) w.i32(0); // throttle_time_ms
      w.array(topics, (w, t) => w.string(t.name).array(t.partitions, (w, p) => w.i32(p).i16(0)));
      return w.framed();
    }
    case 9: {
      if (v >= 3) w.i32(0); // throttle_time_ms
      w.array(topics, (w, t) =>
        w.string(t.name).array(t.partitions, (w, p) => {
          w.i32(p).i64(-1n); // committed_offset: none
          if (v >= 5) w.i32(-1); // committed_leader_epoch
          w.string(null).i16(0); // metadata, error_code
        }),
      );
      if (v >= 2) w.i16(0); // error_code
      return w.framed();
    }
    case 19:
    case 20: {
      if (v >= (req.apiKey === 19 ? 2 : 1)) w.i32(0); // throttle_time_ms
      w.array(topics, (w, t) => {
        const key = `${t.name}/0`;
        if (req.apiKey === 20) {
          for (const k of [...ctx.offsets.keys()]) if (topicOf(k) === t.name) ctx.offsets.delete(k);
        } else if (!ctx.offsets.has(key)) ctx.offsets.set(key, 0n);
        w.string(t.name).i16(0);
        if (req.apiKey === 19 && v >= 1) w.string(null); // error_message
      });
      return w.framed();
    }
    default:
      return "close";
  }
}
