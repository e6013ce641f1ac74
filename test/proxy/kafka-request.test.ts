import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { kafkaMatches } from "../../src/policy/l7/kafka.js";
import { parseKafkaRequest, type KafkaRequest } from "../../src/proxy/kafka/request.js";
import { deniedResponse } from "../../src/proxy/kafka/response.js";
import { i8, i16, i32, i64, str, frame } from "./kafka-frames.js";

const header = (key: number, v: number, corr: number, client: string | null): Buffer =>
  Buffer.concat([i16(key), i16(v), i32(corr), str(client)]);

function produceReq(v: number, topics: [string, number[]][], acks = 1): Buffer {
  const body = [
    ...(v >= 3 ? [str(null)] : []),
    i16(acks),
    i32(1000),
    i32(topics.length),
    ...topics.flatMap(([name, parts]) => [
      str(name),
      i32(parts.length),
      ...parts.flatMap((p) => [i32(p), i32(3), Buffer.from("rec")]),
    ]),
  ];
  return frame(header(0, v, 42, "producer-1"), ...body);
}

function fetchReq(v: number, topics: [string, number[]][]): Buffer {
  const part = (p: number): Buffer[] => [
    i32(p),
    ...(v >= 9 ? [i32(5)] : []),
    i64(100),
    ...(v >= 5 ? [i64(0)] : []),
    i32(1 << 20),
  ];
  const body = [
    i32(-1),
    i32(500),
    i32(1),
    ...(v >= 3 ? [i32(1 << 20)] : []),
    ...(v >= 4 ? [i8(0)] : []),
    ...(v >= 7 ? [i32(0), i32(-1)] : []),
    i32(topics.length),
    ...topics.flatMap(([name, parts]) => [str(name), i32(parts.length), ...parts.flatMap(part)]),
    ...(v >= 7 ? [i32(0)] : []),
    ...(v >= 11 ? [str("rack-a")] : []),
  ];
  return frame(header(1, v, 7, "consumer-1"), ...body);
}

function metadataReq(v: number, topics: string[] | null): Buffer {
  const body = [
    topics === null ? i32(-1) : Buffer.concat([i32(topics.length), ...topics.map(str)]),
    ...(v >= 4 ? [i8(1)] : []),
    ...(v >= 8 ? [i8(0), i8(0)] : []),
  ];
  return frame(header(3, v, 99, null), ...body);
}

function ok(b: Buffer): KafkaRequest {
  const r = parseKafkaRequest(b);
  assert.equal(r.kind, "ok", JSON.stringify(r));
  assert.equal(r.kind === "ok" && r.length, b.length);
  return (r as { request: KafkaRequest }).request;
}

describe("Kafka requests: header and topics", () => {
  for (let v = 0; v <= 8; v++) {
    test(`Produce v${v}: topics and partitions`, () => {
      const r = ok(
        produceReq(v, [
          ["orders", [0, 3]],
          ["audit", [1]],
        ]),
      );
      assert.deepEqual(
        { key: r.apiKey, v: r.apiVersion, corr: r.correlationId, client: r.clientID, acks: r.acks },
        { key: 0, v, corr: 42, client: "producer-1", acks: 1 },
      );
      assert.deepEqual(r.topics, [
        { name: "orders", partitions: [0, 3] },
        { name: "audit", partitions: [1] },
      ]);
    });
  }
  for (let v = 0; v <= 11; v++) {
    test(`Fetch v${v}: topics and partitions`, () => {
      const r = ok(
        fetchReq(v, [
          ["orders", [2]],
          ["payments", [0, 1]],
        ]),
      );
      assert.equal(r.apiKey, 1);
      assert.equal(r.clientID, "consumer-1");
      assert.deepEqual(r.topics, [
        { name: "orders", partitions: [2] },
        { name: "payments", partitions: [0, 1] },
      ]);
    });
  }
  for (let v = 0; v <= 8; v++) {
    test(`Metadata v${v}: named topics; ${v === 0 ? "empty list" : "null"} means all topics`, () => {
      const r = ok(metadataReq(v, ["a", "b"]));
      assert.deepEqual(
        r.topics?.map((t) => t.name),
        ["a", "b"],
      );
      assert.equal(r.allTopics, false);
      assert.equal(r.clientID, null);
      const all = ok(metadataReq(v, v === 0 ? [] : null));
      assert.equal(all.allTopics, true);
    });
  }

  test("other API keys: the header only", () => {
    const r = ok(frame(header(18, 3, 5, "c"), Buffer.from([0, 0])));
    assert.deepEqual(r, { apiKey: 18, apiVersion: 3, correlationId: 5, clientID: "c" });
  });

  test("two requests back to back: the first one's length", () => {
    const a = produceReq(2, [["t", [0]]]);
    const r = parseKafkaRequest(Buffer.concat([a, metadataReq(1, null)]));
    assert.equal(r.kind === "ok" && r.length, a.length);
  });

  test("the parsed request feeds the policy matcher: every topic must be allowed", () => {
    const rules = [{ role: "produce" as const, topic: "orders" }];
    const asked = (b: Buffer): boolean => {
      const r = ok(b);
      return kafkaMatches(rules, {
        apiKey: r.apiKey,
        apiVersion: r.apiVersion,
        clientID: r.clientID ?? "",
        topics: r.topics?.map((t) => t.name) ?? [],
      });
    };
    assert.equal(asked(produceReq(3, [["orders", [0]]])), true);
    assert.equal(
      asked(
        produceReq(3, [
          ["orders", [0]],
          ["audit", [0]],
        ]),
      ),
      false,
    );
    assert.equal(asked(fetchReq(4, [["orders", [0]]])), false);
    assert.equal(asked(metadataReq(1, ["orders"])), true);
    assert.equal(asked(metadataReq(1, null)), false);
  });
});

describe("Kafka requests: hostile input", () => {
  const cases: { name: string; bytes: Buffer; expect: "incomplete" | RegExp }[] = [
    { name: "fewer than 4 bytes", bytes: Buffer.from([0, 0]), expect: "incomplete" },
    {
      name: "a frame not complete yet",
      bytes: produceReq(1, [["t", [0]]]).subarray(0, 20),
      expect: "incomplete",
    },
    { name: "negative size", bytes: i32(-5), expect: /request size/ },
    { name: "size over the limit", bytes: i32(64 * 1024 * 1024), expect: /request size/ },
    { name: "size smaller than a header", bytes: Buffer.concat([i32(4), i32(0)]), expect: /request size/ },
    {
      name: "client id longer than the frame",
      bytes: frame(i16(0), i16(1), i32(1), i16(500)),
      expect: /shorter/,
    },
    {
      name: "topic count larger than the frame can hold",
      bytes: frame(header(3, 1, 1, "c"), i32(0x7fffffff)),
      expect: /shorter/,
    },
    {
      name: "records length past the frame",
      bytes: frame(header(0, 1, 1, "c"), i16(1), i32(1), i32(1), str("t"), i32(1), i32(0), i32(1 << 30)),
      expect: /shorter/,
    },
    { name: "negative array count", bytes: frame(header(3, 1, 1, "c"), i32(-7)), expect: /shorter/ },
    { name: "negative api version", bytes: frame(header(0, -1, 1, "c")), expect: /negative/ },
    {
      name: "Produce v9 (flexible encoding)",
      bytes: frame(header(0, 9, 1, "c"), i8(0)),
      expect: /not supported/,
    },
    { name: "Fetch v12", bytes: frame(header(1, 12, 1, "c"), i8(0)), expect: /not supported/ },
    { name: "Metadata v9", bytes: frame(header(3, 9, 1, "c"), i8(0)), expect: /not supported/ },
  ];
  for (const c of cases) {
    test(`${c.expect === "incomplete" ? "incomplete" : "error"}: ${c.name}`, () => {
      const r = parseKafkaRequest(c.bytes);
      if (c.expect === "incomplete") assert.deepEqual(r, { kind: "incomplete" });
      else {
        assert.equal(r.kind, "error");
        assert.match(r.kind === "error" ? r.reason : "", c.expect);
      }
    });
  }

  test("30000 mutated requests never throw", () => {
    let s = 11;
    const rnd = (n: number): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return (s >>> 8) % n;
    };
    const seeds = [produceReq(8, [["a", [0, 1]]]), fetchReq(11, [["b", [2]]]), metadataReq(8, ["c"])];
    for (let i = 0; i < 30000; i++) {
      const b = Buffer.from(seeds[i % 3] as Buffer);
      for (let k = 0; k < 1 + rnd(3); k++) if (b.length) b[rnd(b.length)] = rnd(256);
      parseKafkaRequest(b);
    }
  });
});

describe("Kafka: the response to a denied request", () => {
  test("Produce v0: exact bytes with TOPIC_AUTHORIZATION_FAILED per partition", () => {
    const r = ok(produceReq(0, [["orders", [0, 3]]]));
    const expected = frame(
      i32(42),
      i32(1),
      str("orders"),
      i32(2),
      ...[0, 3].flatMap((p) => [i32(p), i16(29), i64(-1)]),
    );
    assert.deepEqual(deniedResponse(r), expected);
  });

  test("Produce v8: log times, record errors and throttle time", () => {
    const r = ok(produceReq(8, [["t", [1]]]));
    const expected = frame(
      i32(42),
      i32(1),
      str("t"),
      i32(1),
      i32(1),
      i16(29),
      i64(-1),
      i64(-1),
      i64(-1),
      i32(0),
      i16(-1),
      i32(0),
    );
    assert.deepEqual(deniedResponse(r), expected);
  });

  test("Produce with acks=0 gets no response", () => {
    assert.equal(deniedResponse(ok(produceReq(3, [["t", [0]]], 0))), undefined);
  });

  test("Fetch v11: exact bytes", () => {
    const r = ok(fetchReq(11, [["t", [2]]]));
    const expected = frame(
      i32(7),
      i32(0),
      i16(0),
      i32(0),
      i32(1),
      str("t"),
      i32(1),
      i32(2),
      i16(29),
      i64(-1),
      i64(-1),
      i64(-1),
      i32(-1),
      i32(-1),
      i32(-1),
    );
    assert.deepEqual(deniedResponse(r), expected);
  });

  test("Metadata v1: each topic with error 29, no brokers", () => {
    const r = ok(metadataReq(1, ["a"]));
    const expected = frame(i32(99), i32(0), i32(-1), i32(1), i16(29), str("a"), i8(0), i32(0));
    assert.deepEqual(deniedResponse(r), expected);
  });

  test("a kind without topic errors (ApiVersions) has no denied response: the caller closes", () => {
    assert.equal(deniedResponse(ok(frame(header(18, 0, 1, "c")))), undefined);
  });
});
