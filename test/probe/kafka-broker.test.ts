import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startKafkaBroker, type KafkaBroker } from "../../src/probe/kafka-broker.js";
import {
  decodeKafkaResponse,
  encodeKafkaRequest,
  kafkaRequest,
  KafkaResponseReader,
  readKafkaResponse,
  type DecodedKafkaResponse,
  type KafkaRequestSpec,
} from "../../src/probe/kafka-client.js";
import { parseKafkaRequest } from "../../src/proxy/kafka/request.js";

async function withBroker(f: (b: KafkaBroker, sock: net.Socket) => Promise<void>): Promise<void> {
  const b = await startKafkaBroker({ host: "127.0.0.1", port: 0 });
  const sock = net.connect(b.port, "127.0.0.1");
  sock.on("error", () => undefined);
  try {
    await new Promise<void>((r) => sock.once("connect", r));
    await f(b, sock);
  } finally {
    sock.destroy();
    await b.close();
  }
}

async function roundTrip(sock: net.Socket, spec: KafkaRequestSpec): Promise<DecodedKafkaResponse> {
  kafkaRequest(sock, spec);
  const f = await readKafkaResponse(sock);
  assert.ok(typeof f === "object", `expected a response to ${JSON.stringify(spec)}, got ${String(f)}`);
  return decodeKafkaResponse(spec.apiKey, spec.apiVersion, f.bytes);
}

/** The consumer-group and topic-admin kinds: [api key, name, highest version read]. */
const NEW_KINDS = [
  [2, "ListOffsets", 5],
  [8, "OffsetCommit", 7],
  [9, "OffsetFetch", 5],
  [19, "CreateTopics", 4],
  [20, "DeleteTopics", 3],
] as const;

describe("Kafka client: request frames the parser reads back", () => {
  const cases: { name: string; spec: KafkaRequestSpec; topics: string[] | undefined; acks?: number }[] = [
    ...Array.from({ length: 9 }, (_, v) => ({
      name: `Produce v${v}`,
      spec: { apiKey: 0, apiVersion: v, correlationId: v, topics: ["a", "b"], partitions: [0, 2], acks: -1 },
      topics: ["a", "b"],
      acks: -1,
    })),
    ...Array.from({ length: 12 }, (_, v) => ({
      name: `Fetch v${v}`,
      spec: { apiKey: 1, apiVersion: v, correlationId: v, topics: ["a"], partitions: [0, 2] },
      topics: ["a"],
    })),
    ...Array.from({ length: 9 }, (_, v) => ({
      name: `Metadata v${v}`,
      spec: { apiKey: 3, apiVersion: v, correlationId: v, topics: ["a", "b"] },
      topics: ["a", "b"],
    })),
    ...NEW_KINDS.flatMap(([key, name, max]) =>
      Array.from({ length: max + 1 }, (_, v) => ({
        name: `${name} v${v}`,
        spec: { apiKey: key, apiVersion: v, correlationId: v, topics: ["a", "b"], partitions: [0, 2] },
        topics: ["a", "b"],
      })),
    ),
    {
      name: "ApiVersions v3 (flexible header)",
      spec: { apiKey: 18, apiVersion: 3, correlationId: 1 },
      topics: undefined,
    },
  ];
  for (const c of cases) {
    test(`${c.name}: header, topics and partitions round-trip`, () => {
      const r = parseKafkaRequest(encodeKafkaRequest({ ...c.spec, clientId: "probe-7" }));
      assert.equal(r.kind, "ok", JSON.stringify(r));
      if (r.kind !== "ok") return;
      const req = r.request;
      assert.deepEqual(
        [req.apiKey, req.apiVersion, req.correlationId, req.clientID],
        [c.spec.apiKey, c.spec.apiVersion, c.spec.correlationId, "probe-7"],
      );
      assert.deepEqual(
        req.topics?.map((t) => t.name),
        c.topics,
      );
      const named = [3, 19, 20].includes(c.spec.apiKey); // kinds whose topics carry no partitions
      if (c.topics)
        assert.deepEqual(
          req.topics?.map((t) => t.partitions),
          c.topics.map(() => (named ? [] : [0, 2])),
        );
      assert.equal(req.acks, c.acks);
    });
  }

  test("Metadata for every topic: null in v1+, an empty list in v0", () => {
    for (const v of [0, 1, 8]) {
      const r = parseKafkaRequest(
        encodeKafkaRequest({ apiKey: 3, apiVersion: v, correlationId: 1, topics: null }),
      );
      assert.equal(r.kind === "ok" && r.request.allTopics, true, `v${v}`);
    }
  });

  test("OffsetFetch for every topic: null topics from v2", () => {
    const r = parseKafkaRequest(
      encodeKafkaRequest({ apiKey: 9, apiVersion: 2, correlationId: 1, topics: null }),
    );
    assert.deepEqual(r.kind === "ok" && [r.request.allTopics, r.request.topics], [true, []]);
  });
});

describe("Kafka probe broker", () => {
  for (let v = 0; v <= 8; v++) {
    test(`Produce v${v}: error 0 per partition, offsets count up`, async () => {
      await withBroker(async (b, sock) => {
        const spec = {
          apiKey: 0,
          apiVersion: v,
          correlationId: 100 + v,
          topics: ["orders"],
          partitions: [0, 1],
        };
        const first = await roundTrip(sock, spec);
        assert.deepEqual(first, {
          correlationId: 100 + v,
          topics: [
            {
              name: "orders",
              errorCode: 0,
              partitions: [
                { partition: 0, errorCode: 0 },
                { partition: 1, errorCode: 0 },
              ],
            },
          ],
        });
        await roundTrip(sock, { ...spec, correlationId: 200 });
        assert.deepEqual(
          b.received.map((r) => [r.apiKey, r.apiVersion, r.correlationId, r.clientID, r.topics]),
          [
            [0, v, 100 + v, "membrane-probe", ["orders"]],
            [0, v, 200, "membrane-probe", ["orders"]],
          ],
        );
      });
    });
  }

  for (let v = 0; v <= 11; v++) {
    test(`Fetch v${v}: empty record sets with error 0`, async () => {
      await withBroker(async (_b, sock) => {
        const d = await roundTrip(sock, {
          apiKey: 1,
          apiVersion: v,
          correlationId: 7,
          topics: ["orders", "audit"],
        });
        assert.deepEqual(
          d.topics.map((t) => [t.name, t.errorCode, t.partitions.length]),
          [
            ["orders", 0, 1],
            ["audit", 0, 1],
          ],
        );
        assert.equal(d.errorCode, v >= 7 ? 0 : undefined);
      });
    });
  }

  for (let v = 0; v <= 8; v++) {
    test(`Metadata v${v}: the named topics, and itself as the only broker`, async () => {
      await withBroker(async (b, sock) => {
        const d = await roundTrip(sock, {
          apiKey: 3,
          apiVersion: v,
          correlationId: 3,
          topics: ["orders", "audit"],
        });
        assert.deepEqual(d.brokers, [{ nodeId: 1, host: "127.0.0.1", port: b.port }]);
        assert.deepEqual(
          d.topics.map((t) => [t.name, t.errorCode, t.partitions]),
          [
            ["orders", 0, [{ partition: 0, errorCode: 0 }]],
            ["audit", 0, [{ partition: 0, errorCode: 0 }]],
          ],
        );
      });
    });
  }

  test("Metadata for every topic lists the topics produced to", async () => {
    await withBroker(async (_b, sock) => {
      await roundTrip(sock, { apiKey: 0, apiVersion: 3, correlationId: 1, topics: ["orders", "audit"] });
      const d = await roundTrip(sock, { apiKey: 3, apiVersion: 1, correlationId: 2, topics: null });
      assert.deepEqual(
        d.topics.map((t) => t.name),
        ["orders", "audit"],
      );
    });
  });

  for (let v = 0; v <= 3; v++) {
    test(`ApiVersions v${v}: the versions it answers`, async () => {
      await withBroker(async (_b, sock) => {
        const d = await roundTrip(sock, { apiKey: 18, apiVersion: v, correlationId: 5 });
        assert.equal(d.errorCode, 0);
        assert.deepEqual(
          d.apiVersions?.map((a) => [a.apiKey, a.min, a.max]),
          [
            [0, 0, 8],
            [1, 0, 11],
            [2, 0, 5],
            [3, 0, 8],
            [8, 0, 7],
            [9, 0, 5],
            [18, 0, 3],
            [19, 0, 4],
            [20, 0, 3],
          ],
        );
      });
    });
  }

  test("ApiVersions v4 (too new): UNSUPPORTED_VERSION written in v0, with the versions it answers", async () => {
    await withBroker(async (_b, sock) => {
      const d = await roundTrip(sock, { apiKey: 18, apiVersion: 4, correlationId: 5 });
      assert.equal(d.errorCode, 35);
      assert.equal(d.apiVersions?.length, 9);
    });
  });

  for (const [key, name, max] of NEW_KINDS) {
    for (let v = 0; v <= max; v++) {
      test(`${name} v${v}: error 0 for every topic${key >= 19 ? "" : " and partition"}`, async () => {
        await withBroker(async (b, sock) => {
          const d = await roundTrip(sock, {
            apiKey: key,
            apiVersion: v,
            correlationId: 40 + v,
            topics: ["orders", "audit"],
            partitions: [0, 1],
          });
          assert.equal(d.correlationId, 40 + v);
          const parts = key >= 19 ? [] : [0, 1].map((partition) => ({ partition, errorCode: 0 }));
          assert.deepEqual(
            d.topics.map((t) => [t.name, t.errorCode, t.partitions]),
            [
              ["orders", 0, parts],
              ["audit", 0, parts],
            ],
          );
          assert.equal(d.errorCode, key === 9 && v >= 2 ? 0 : undefined);
          assert.deepEqual(
            b.received.map((r) => [r.apiKey, r.apiVersion, r.topics]),
            [[key, v, ["orders", "audit"]]],
          );
        });
      });
    }
  }

  test("ListOffsets answers the next offset of a partition produced to", async () => {
    await withBroker(async (_b, sock) => {
      await roundTrip(sock, { apiKey: 0, apiVersion: 3, correlationId: 1, topics: ["orders"] });
      await roundTrip(sock, { apiKey: 0, apiVersion: 3, correlationId: 2, topics: ["orders"] });
      kafkaRequest(sock, { apiKey: 2, apiVersion: 1, correlationId: 3, topics: ["orders"] });
      const f = await readKafkaResponse(sock);
      assert.ok(typeof f === "object");
      // size, correlation id, 1 topic, "orders", 1 partition, partition 0, error 0, timestamp, offset
      assert.equal(f.bytes.readBigInt64BE(4 + 4 + 4 + 8 + 4 + 4 + 2 + 8), 2n);
    });
  });

  test("CreateTopics adds a topic to Metadata for every topic; DeleteTopics removes it", async () => {
    await withBroker(async (_b, sock) => {
      const all = async (corr: number): Promise<string[]> =>
        (await roundTrip(sock, { apiKey: 3, apiVersion: 1, correlationId: corr, topics: null })).topics.map(
          (t) => t.name,
        );
      await roundTrip(sock, { apiKey: 19, apiVersion: 4, correlationId: 1, topics: ["created", "other"] });
      assert.deepEqual(await all(2), ["created", "other"]);
      await roundTrip(sock, { apiKey: 20, apiVersion: 3, correlationId: 3, topics: ["created"] });
      assert.deepEqual(await all(4), ["other"]);
    });
  });

  test("Produce with acks=0 gets no answer: the next answer is the next request's", async () => {
    await withBroker(async (b, sock) => {
      kafkaRequest(sock, { apiKey: 0, apiVersion: 3, correlationId: 1, topics: ["t"], acks: 0 });
      const d = await roundTrip(sock, { apiKey: 3, apiVersion: 1, correlationId: 2, topics: ["t"] });
      assert.equal(d.correlationId, 2);
      assert.equal(b.received.length, 2);
    });
  });

  test("pipelined requests are answered in order", async () => {
    await withBroker(async (_b, sock) => {
      const specs: KafkaRequestSpec[] = [
        { apiKey: 18, apiVersion: 2, correlationId: 1 },
        { apiKey: 3, apiVersion: 8, correlationId: 2, topics: ["t"] },
        { apiKey: 0, apiVersion: 8, correlationId: 3, topics: ["t"] },
        { apiKey: 1, apiVersion: 11, correlationId: 4, topics: ["t"] },
      ];
      sock.write(Buffer.concat(specs.map(encodeKafkaRequest)));
      const reader = new KafkaResponseReader(sock);
      for (const s of specs) {
        const f = await reader.next();
        assert.ok(typeof f === "object");
        assert.equal(decodeKafkaResponse(s.apiKey, s.apiVersion, f.bytes).correlationId, s.correlationId);
      }
    });
  });

  const closing: { name: string; bytes: Buffer; recorded: number[] }[] = [
    {
      name: "an API key it does not serve (Heartbeat)",
      bytes: encodeKafkaRequest({ apiKey: 12, apiVersion: 0, correlationId: 9, body: Buffer.alloc(12) }),
      recorded: [12],
    },
    {
      name: "a version it cannot read (Fetch v12)",
      bytes: encodeKafkaRequest({ apiKey: 1, apiVersion: 12, correlationId: 9 }),
      recorded: [1],
    },
    { name: "garbage", bytes: Buffer.from("GET / HTTP/1.1\r\n\r\n"), recorded: [] },
  ];
  for (const c of closing) {
    test(`${c.name}: recorded when readable, and the connection is closed`, async () => {
      await withBroker(async (b, sock) => {
        sock.write(c.bytes);
        assert.equal(await readKafkaResponse(sock), "closed");
        assert.deepEqual(
          b.received.map((r) => r.apiKey),
          c.recorded,
        );
      });
    });
  }

  test("decoding is strict: a response of another version is an error", async () => {
    await withBroker(async (_b, sock) => {
      kafkaRequest(sock, { apiKey: 0, apiVersion: 5, correlationId: 1, topics: ["t"] });
      const f = await readKafkaResponse(sock);
      assert.ok(typeof f === "object");
      assert.throws(
        () => decodeKafkaResponse(0, 4, f.bytes),
        /Cannot decode Kafka response: 8 bytes left over/,
      );
    });
  });
});
