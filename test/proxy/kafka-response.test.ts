import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { decodeKafkaResponse, encodeKafkaRequest } from "../../src/probe/kafka-client.js";
import { MAX_TOPIC_VERSION, parseKafkaRequest, type KafkaRequest } from "../../src/proxy/kafka/request.js";
import { deniedResponse } from "../../src/proxy/kafka/response.js";

const i16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const i64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return b;
};
const str = (s: string | null): Buffer =>
  s === null ? i16(-1) : Buffer.concat([i16(Buffer.byteLength(s)), Buffer.from(s)]);
const frame = (...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  return Buffer.concat([i32(body.length), body]);
};

const req = (
  apiKey: number,
  apiVersion: number,
  topics: KafkaRequest["topics"],
  extra = {},
): KafkaRequest => ({
  apiKey,
  apiVersion,
  correlationId: 5,
  clientID: "c",
  ...(topics ? { topics } : {}),
  ...extra,
});
const ORDERS = [{ name: "orders", partitions: [0, 2] }];

describe("Kafka: denied answers of the consumer-group and topic-admin kinds, exact bytes", () => {
  const cases: { name: string; req: KafkaRequest; bytes: Buffer }[] = [
    {
      name: "ListOffsets v0: error 29 and no old-style offsets per partition",
      req: req(2, 0, ORDERS),
      bytes: frame(
        i32(5),
        i32(1),
        str("orders"),
        i32(2),
        ...[0, 2].flatMap((p) => [i32(p), i16(29), i32(0)]),
      ),
    },
    {
      name: "ListOffsets v5: throttle time; timestamp, offset and leader epoch unknown",
      req: req(2, 5, ORDERS),
      bytes: frame(
        i32(5),
        i32(0),
        i32(1),
        str("orders"),
        i32(2),
        ...[0, 2].flatMap((p) => [i32(p), i16(29), i64(-1), i64(-1), i32(-1)]),
      ),
    },
    {
      name: "OffsetCommit v2: error 29 per partition, no throttle time",
      req: req(8, 2, ORDERS),
      bytes: frame(i32(5), i32(1), str("orders"), i32(2), i32(0), i16(29), i32(2), i16(29)),
    },
    {
      name: "OffsetCommit v7: throttle time first",
      req: req(8, 7, ORDERS),
      bytes: frame(i32(5), i32(0), i32(1), str("orders"), i32(2), i32(0), i16(29), i32(2), i16(29)),
    },
    {
      name: "OffsetFetch v1: offset -1, null metadata, error 29; no top-level error",
      req: req(9, 1, [{ name: "orders", partitions: [4] }]),
      bytes: frame(i32(5), i32(1), str("orders"), i32(1), i32(4), i64(-1), str(null), i16(29)),
    },
    {
      name: "OffsetFetch v5: throttle time, leader epoch, top-level error 0",
      req: req(9, 5, [{ name: "orders", partitions: [4] }]),
      bytes: frame(
        i32(5),
        i32(0),
        i32(1),
        str("orders"),
        i32(1),
        i32(4),
        i64(-1),
        i32(-1),
        str(null),
        i16(29),
        i16(0),
      ),
    },
    {
      name: "OffsetFetch v3 for every topic: no topics, top-level error 29",
      req: req(9, 3, [], { allTopics: true }),
      bytes: frame(i32(5), i32(0), i32(0), i16(29)),
    },
    {
      name: "CreateTopics v0: error 29 per topic",
      req: req(19, 0, [{ name: "new", partitions: [] }]),
      bytes: frame(i32(5), i32(1), str("new"), i16(29)),
    },
    {
      name: "CreateTopics v4: throttle time, error 29 and a null message per topic",
      req: req(19, 4, [{ name: "new", partitions: [] }]),
      bytes: frame(i32(5), i32(0), i32(1), str("new"), i16(29), str(null)),
    },
    {
      name: "DeleteTopics v0: error 29 per topic",
      req: req(20, 0, [{ name: "old", partitions: [] }]),
      bytes: frame(i32(5), i32(1), str("old"), i16(29)),
    },
    {
      name: "DeleteTopics v3: throttle time first",
      req: req(20, 3, [{ name: "old", partitions: [] }]),
      bytes: frame(i32(5), i32(0), i32(1), str("old"), i16(29)),
    },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(deniedResponse(c.req), c.bytes));

  test("kinds without topics still get no answer (the caller closes): Heartbeat, FindCoordinator", () => {
    assert.deepEqual(
      [deniedResponse(req(12, 0, undefined)), deniedResponse(req(10, 1, undefined))],
      [undefined, undefined],
    );
  });
});

describe("Kafka: every denied answer decodes strictly in the request's version", () => {
  const kinds = Object.entries(MAX_TOPIC_VERSION).map(([k, max]) => [Number(k), max] as const);
  for (const [key, max] of kinds) {
    for (let v = 0; v <= max; v++) {
      test(`api key ${key} v${v}: correlation id kept, error 29 for every topic${key === 19 || key === 20 || key === 3 ? "" : " and partition"}`, () => {
        const frameIn = encodeKafkaRequest({
          apiKey: key,
          apiVersion: v,
          correlationId: 1000 + v,
          topics: ["orders", "audit"],
          partitions: [0, 5],
        });
        const parsed = parseKafkaRequest(frameIn);
        assert.equal(parsed.kind, "ok");
        if (parsed.kind !== "ok") return;
        const out = deniedResponse(parsed.request);
        assert.ok(out, "a denied answer exists");
        const d = decodeKafkaResponse(key, v, out);
        assert.equal(d.correlationId, 1000 + v);
        const perTopic = key === 3 || key === 19 || key === 20;
        assert.deepEqual(
          d.topics.map((t) => [t.name, t.errorCode, t.partitions]),
          ["orders", "audit"].map((name) => [
            name,
            29,
            perTopic ? [] : [0, 5].map((partition) => ({ partition, errorCode: 29 })),
          ]),
        );
      });
    }
  }

  test("OffsetFetch for every topic, v2-v5: decodes with top-level error 29 and no topics", () => {
    for (let v = 2; v <= 5; v++) {
      const parsed = parseKafkaRequest(
        encodeKafkaRequest({ apiKey: 9, apiVersion: v, correlationId: 3, topics: null }),
      );
      assert.ok(parsed.kind === "ok" && parsed.request.allTopics, `v${v}`);
      const d = decodeKafkaResponse(9, v, deniedResponse(parsed.request) ?? Buffer.alloc(0));
      assert.deepEqual([d.topics, d.errorCode], [[], 29], `v${v}`);
    }
  });
});
