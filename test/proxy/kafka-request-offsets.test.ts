import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { MAX_TOPIC_VERSION, parseKafkaRequest, type KafkaRequest } from "../../src/proxy/kafka/request.js";
import { i8, i16, i32, i64, str, frame } from "./kafka-frames.js";

const header = (key: number, v: number): Buffer =>
  Buffer.concat([i16(key), i16(v), i32(77), str("consumer-1")]);

type Topics = [string, number[]][];
const TOPICS: Topics = [
  ["orders", [0, 3]],
  ["audit", [1]],
];

/** Body fields before the topics, the topics, and the fields after them (not read by the parser). */
interface Built {
  readonly before: Buffer[];
  readonly topics: Buffer[];
  readonly after: Buffer[];
}

const arr = <T>(items: readonly T[], each: (t: T) => Buffer[]): Buffer[] => [
  i32(items.length),
  ...items.flatMap(each),
];

function listOffsets(v: number, topics: Topics): Built {
  const part = (p: number): Buffer[] => [
    i32(p),
    ...(v >= 4 ? [i32(7)] : []), // current_leader_epoch
    i64(-1), // timestamp
    ...(v === 0 ? [i32(1)] : []), // max_num_offsets
  ];
  return {
    before: [i32(-1), ...(v >= 2 ? [i8(1)] : [])],
    topics: arr(topics, ([name, parts]) => [str(name), ...arr(parts, part)]),
    after: [],
  };
}

function offsetCommit(v: number, topics: Topics): Built {
  const part = (p: number): Buffer[] => [
    i32(p),
    i64(42), // committed_offset
    ...(v >= 6 ? [i32(3)] : []), // committed_leader_epoch
    ...(v === 1 ? [i64(1000)] : []), // commit_timestamp
    str(p % 2 === 0 ? "meta" : null), // committed_metadata
  ];
  return {
    before: [
      str("group-1"),
      ...(v >= 1 ? [i32(5), str("member-1")] : []),
      ...(v >= 7 ? [str("instance-1")] : []),
      ...(v >= 2 && v <= 4 ? [i64(60000)] : []),
    ],
    topics: arr(topics, ([name, parts]) => [str(name), ...arr(parts, part)]),
    after: [],
  };
}

function offsetFetch(_v: number, topics: Topics | null): Built {
  return {
    before: [str("group-1")],
    topics:
      topics === null
        ? [i32(-1)]
        : arr(topics, ([name, parts]) => [str(name), ...arr(parts, (p) => [i32(p)])]),
    after: [],
  };
}

function createTopics(v: number, topics: Topics): Built {
  const topic = ([name]: [string, number[]]): Buffer[] => [
    str(name),
    i32(3), // num_partitions
    i16(1), // replication_factor
    ...arr([[0, [1, 2]] as const], ([p, brokers]) => [i32(p), ...arr(brokers, (b) => [i32(b)])]),
    ...arr(
      [
        ["cleanup.policy", "compact"],
        ["retention.ms", null],
      ] as const,
      ([k, val]) => [str(k), str(val)],
    ),
  ];
  return { before: [], topics: arr(topics, topic), after: [i32(5000), ...(v >= 1 ? [i8(0)] : [])] };
}

function deleteTopics(_v: number, topics: Topics): Built {
  return { before: [], topics: arr(topics, ([name]) => [str(name)]), after: [i32(5000)] };
}

const KINDS = [
  { name: "ListOffsets", key: 2, build: listOffsets, partitions: true },
  { name: "OffsetCommit", key: 8, build: offsetCommit, partitions: true },
  { name: "OffsetFetch", key: 9, build: offsetFetch, partitions: true },
  { name: "CreateTopics", key: 19, build: createTopics, partitions: false },
  { name: "DeleteTopics", key: 20, build: deleteTopics, partitions: false },
] as const;

const whole = (key: number, v: number, b: Built): Buffer =>
  frame(header(key, v), ...b.before, ...b.topics, ...b.after);

function ok(bytes: Buffer): KafkaRequest {
  const r = parseKafkaRequest(bytes);
  assert.equal(r.kind, "ok", JSON.stringify(r));
  assert.equal(r.kind === "ok" && r.length, bytes.length);
  return (r as { request: KafkaRequest }).request;
}

describe("Kafka requests: topics of the consumer-group and topic-admin kinds", () => {
  test("the versions read are the ones before each kind's flexible encoding", () => {
    assert.deepEqual(MAX_TOPIC_VERSION, { 0: 8, 1: 11, 2: 5, 3: 8, 8: 7, 9: 5, 19: 4, 20: 3 });
  });

  for (const k of KINDS) {
    const max = MAX_TOPIC_VERSION[k.key] ?? -1;
    for (let v = 0; v <= max; v++) {
      test(`${k.name} v${v}: header, exact topics${k.partitions ? " and partitions" : ""}`, () => {
        const r = ok(whole(k.key, v, k.build(v, TOPICS)));
        assert.deepEqual([r.apiKey, r.apiVersion, r.correlationId, r.clientID], [k.key, v, 77, "consumer-1"]);
        assert.deepEqual(
          r.topics,
          TOPICS.map(([name, parts]) => ({ name, partitions: k.partitions ? parts : [] })),
        );
      });
    }
    test(`${k.name} v${max + 1} (flexible) is refused: not supported`, () => {
      assert.deepEqual(parseKafkaRequest(frame(header(k.key, max + 1), i8(0))), {
        kind: "error",
        reason: `api key ${k.key} version ${max + 1} is not supported`,
      });
    });
    test(`${k.name}: an empty topic list is no topics`, () => {
      assert.deepEqual(ok(whole(k.key, 1, k.build(1, []))).topics, []);
    });
  }

  test("OffsetFetch v2-v5 with null topics: every topic", () => {
    for (let v = 2; v <= 5; v++) {
      const r = ok(whole(9, v, offsetFetch(v, null)));
      assert.deepEqual([r.topics, r.allTopics], [[], true], `v${v}`);
    }
    assert.equal(ok(whole(9, 3, offsetFetch(3, TOPICS))).allTopics, false);
  });

  for (const v of [0, 1]) {
    test(`OffsetFetch v${v} with null topics is malformed (nullable only from v2)`, () => {
      assert.deepEqual(parseKafkaRequest(whole(9, v, offsetFetch(v, null))), {
        kind: "error",
        reason: `OffsetFetch v${v} with null topics (all topics needs v2 or later)`,
      });
    });
  }
});

describe("Kafka requests: truncated and hostile bodies of those kinds", () => {
  // Every cut of the body, re-framed with an honest size: an error while the
  // topics are incomplete, the same topics once only the unread tail is cut.
  for (const k of KINDS) {
    const max = MAX_TOPIC_VERSION[k.key] ?? -1;
    for (let v = 0; v <= max; v++) {
      test(`${k.name} v${v}: every truncation is "shorter than its fields" until only the tail is missing`, () => {
        const b = k.build(v, TOPICS);
        const body = Buffer.concat([header(k.key, v), ...b.before, ...b.topics, ...b.after]);
        const tail = Buffer.concat(b.after).length;
        const expected = TOPICS.map(([name, parts]) => ({ name, partitions: k.partitions ? parts : [] }));
        for (let cut = 1; cut <= body.length - 8; cut++) {
          const r = parseKafkaRequest(frame(body.subarray(0, body.length - cut)));
          if (cut <= tail) assert.deepEqual(r.kind === "ok" && r.request.topics, expected, `cut ${cut}`);
          else
            assert.deepEqual(r, { kind: "error", reason: "request shorter than its fields" }, `cut ${cut}`);
        }
      });
    }
  }

  const hostile: { name: string; bytes: Buffer }[] = [
    {
      name: "ListOffsets partition count larger than the frame",
      bytes: frame(header(2, 1), i32(-1), i32(1), str("t"), i32(0x10000000), i32(0)),
    },
    { name: "ListOffsets negative topic count", bytes: frame(header(2, 5), i32(-1), i8(0), i32(-2)) },
    {
      name: "OffsetCommit metadata length past the frame",
      bytes: frame(header(8, 0), str("g"), i32(1), str("t"), i32(1), i32(0), i64(1), i16(300)),
    },
    { name: "OffsetCommit group id length past the frame", bytes: frame(header(8, 3), i16(1000)) },
    {
      name: "OffsetFetch partition count of 2^31-1",
      bytes: frame(header(9, 2), str("g"), i32(1), str("t"), i32(0x7fffffff)),
    },
    { name: "OffsetFetch topic name of null", bytes: frame(header(9, 2), str("g"), i32(1), i16(-1), i32(0)) },
    {
      name: "CreateTopics broker id count larger than the frame",
      bytes: frame(header(19, 4), i32(1), str("t"), i32(1), i16(1), i32(1), i32(0), i32(0x40000000)),
    },
    {
      name: "CreateTopics config count larger than the frame",
      bytes: frame(header(19, 0), i32(1), str("t"), i32(1), i16(1), i32(0), i32(1000), i32(0)),
    },
    { name: "DeleteTopics name count larger than the frame", bytes: frame(header(20, 3), i32(9), str("t")) },
  ];
  for (const c of hostile) {
    test(`error, never a throw: ${c.name}`, () => {
      assert.deepEqual(parseKafkaRequest(c.bytes), {
        kind: "error",
        reason: "request shorter than its fields",
      });
    });
  }

  const kinds = fc.constantFrom(
    ...Object.entries(MAX_TOPIC_VERSION).map(([k, max]) => [Number(k), max] as const),
  );
  const check = (bytes: Buffer): void => {
    const r = parseKafkaRequest(bytes);
    assert.ok(["ok", "error", "incomplete"].includes(r.kind));
    if (r.kind === "ok") assert.ok(r.length <= bytes.length);
  };

  test("property: random bodies behind a valid header of every topic kind never throw", () => {
    fc.assert(
      fc.property(kinds, fc.nat(), fc.uint8Array({ maxLength: 96 }), ([key, max], vSeed, body) => {
        check(frame(header(key, vSeed % (max + 1)), Buffer.from(body)));
      }),
      { numRuns: 5000 },
    );
  });

  test("property: random bytes never throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 128 }), (b) => check(Buffer.from(b))),
      { numRuns: 3000 },
    );
  });

  test("property: valid requests with random bytes overwritten never throw", () => {
    const seeds = KINDS.flatMap((k) => {
      const max = MAX_TOPIC_VERSION[k.key] ?? 0;
      return [0, max].map((v) => whole(k.key, v, k.build(v, TOPICS)));
    });
    fc.assert(
      fc.property(
        fc.constantFrom(...seeds),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (seed, edits) => {
          const b = Buffer.from(seed);
          for (const [at, byte] of edits) b[4 + (at % (b.length - 4))] = byte;
          check(b);
        },
      ),
      { numRuns: 5000 },
    );
  });
});
