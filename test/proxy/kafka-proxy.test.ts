import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { handleKafkaConnection, type KafkaProxyLimits } from "../../src/proxy/kafka/proxy.js";
import { startKafkaBroker, type KafkaBroker } from "../../src/probe/kafka-broker.js";
import {
  decodeKafkaResponse,
  encodeKafkaRequest,
  KafkaResponseReader,
  type KafkaRequestSpec,
  type KafkaResponseFrame,
} from "../../src/probe/kafka-client.js";
import type { ConnectionInfo, L7Event, L7LookupResult } from "../../src/proxy/types.js";
import type { L7Spec } from "../../src/policy/mapstate.js";
import type { KafkaRule } from "../../src/policy/types.js";

const AUTHZ = 29;
const kafkaSpec = (rules: KafkaRule[]): L7Spec => ({
  parser: "kafka",
  http: [],
  dns: [],
  kafka: rules,
  serverNames: [],
});
const stage = (rules: KafkaRule[], extra: Partial<L7LookupResult> = {}): L7LookupResult => ({
  spec: kafkaSpec(rules),
  allowAll: false,
  ...extra,
});

const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

type Policy = L7LookupResult | undefined | "throw";

interface Harness {
  port: number;
  broker: KafkaBroker | undefined;
  events: L7Event[];
  upstreamConnections(): number;
  /** The proxy's side of client connections, and its upstream connections. */
  proxySockets: net.Socket[];
  upstreamSockets: net.Socket[];
  setPolicy(p: Policy): void;
  close(): Promise<void>;
}

const INFO = (port: number): ConnectionInfo => ({
  srcIdentity: 1001,
  dstIdentity: 2002,
  direction: "egress",
  endpoint: "default/producer",
  originalDst: { host: "127.0.0.1", port },
  proto: "TCP",
});

/** Broker (real, or a raw TCP upstream) and the proxy on their own 127.0.0.1 listeners. */
async function startHarness(
  policy: Policy,
  opts: {
    limits?: Partial<KafkaProxyLimits>;
    raw?: (s: net.Socket) => void;
    advertise?: Record<number, [number, number]>;
    useHead?: boolean;
  } = {},
): Promise<Harness> {
  let current = policy;
  const events: L7Event[] = [];
  let conns = 0;
  const proxySockets: net.Socket[] = [];
  const upstreamSockets: net.Socket[] = [];
  const broker = opts.raw
    ? undefined
    : await startKafkaBroker({
        host: "127.0.0.1",
        port: 0,
        ...(opts.advertise ? { advertise: opts.advertise } : {}),
      });
  const rawSockets: net.Socket[] = [];
  const rawHandler = opts.raw;
  const raw = rawHandler
    ? net.createServer((s) => {
        rawSockets.push(s);
        s.on("error", () => undefined);
        rawHandler(s);
      })
    : undefined;
  if (raw) await new Promise<void>((r) => raw.listen(0, "127.0.0.1", r));
  const upstreamPort = broker ? broker.port : (raw?.address() as AddressInfo).port;
  const deps = {
    lookup: {
      forConnection: (): L7LookupResult | undefined => {
        if (current === "throw") throw new Error("policy store down");
        return current;
      },
    },
    sink: (e: L7Event) => events.push(e),
    connectUpstream: (host: string, port: number) => {
      conns++;
      const up = net.connect(port, host);
      upstreamSockets.push(up);
      return up;
    },
    ...(opts.limits ? { limits: opts.limits } : {}),
  };
  const proxy = net.createServer({ allowHalfOpen: true }, (sock) => {
    proxySockets.push(sock);
    if (!opts.useHead) return handleKafkaConnection(sock, INFO(upstreamPort), deps);
    sock.once("data", (head: Buffer) => {
      sock.pause();
      handleKafkaConnection(sock, INFO(upstreamPort), { ...deps, head });
    });
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  return {
    port: (proxy.address() as AddressInfo).port,
    broker,
    events,
    upstreamConnections: () => conns,
    proxySockets,
    upstreamSockets,
    setPolicy: (p) => (current = p),
    close: async () => {
      for (const sock of [...proxySockets, ...rawSockets]) sock.destroy();
      await Promise.all([
        new Promise((r) => proxy.close(r)),
        broker?.close(),
        raw && new Promise((r) => raw.close(r)),
      ]);
    },
  };
}

interface Client {
  sock: net.Socket;
  send(...specs: KafkaRequestSpec[]): void;
  next(timeoutMs?: number): Promise<KafkaResponseFrame | "closed" | "timeout">;
  /** Next response decoded for `spec`; fails the test if the connection closed. */
  answer(spec: KafkaRequestSpec): Promise<ReturnType<typeof decodeKafkaResponse>>;
}

async function connect(port: number): Promise<Client> {
  const sock = net.connect(port, "127.0.0.1");
  sock.on("error", () => undefined);
  // The reader first: a proxy that refuses the connection may reset it before `connect` fires.
  const reader = new KafkaResponseReader(sock);
  await new Promise<void>((r) => sock.once("connect", r).once("close", r));
  return {
    sock,
    send: (...specs) => sock.write(Buffer.concat(specs.map(encodeKafkaRequest))),
    next: (t) => reader.next(t),
    answer: async (spec) => {
      const f = await reader.next();
      assert.ok(typeof f === "object", `expected a response, got ${String(f)}`);
      return decodeKafkaResponse(spec.apiKey, spec.apiVersion, f.bytes);
    },
  };
}

/** One request on a fresh connection: its decoded answer, or "closed". */
async function ask(h: Harness, spec: KafkaRequestSpec): Promise<number[] | "closed" | "timeout"> {
  const c = await connect(h.port);
  try {
    c.send(spec);
    const f = await c.next();
    if (typeof f !== "object") return f;
    const d = decodeKafkaResponse(spec.apiKey, spec.apiVersion, f.bytes);
    assert.equal(d.correlationId, spec.correlationId);
    return d.topics.map((t) => t.errorCode);
  } finally {
    c.sock.destroy();
  }
}

const produce = (topics: string[], v = 3, extra: Partial<KafkaRequestSpec> = {}): KafkaRequestSpec => ({
  apiKey: 0,
  apiVersion: v,
  correlationId: 11,
  topics,
  ...extra,
});
const fetch = (topics: string[], v = 4): KafkaRequestSpec => ({
  apiKey: 1,
  apiVersion: v,
  correlationId: 12,
  topics,
});
const metadata = (topics: string[] | null, v = 1): KafkaRequestSpec => ({
  apiKey: 3,
  apiVersion: v,
  correlationId: 13,
  topics,
});
const apiVersions = (v = 0): KafkaRequestSpec => ({ apiKey: 18, apiVersion: v, correlationId: 14 });
/** A request of another topic kind (ListOffsets 2, OffsetCommit 8, OffsetFetch 9, CreateTopics 19, DeleteTopics 20). */
const kind =
  (apiKey: number, dv: number) =>
  (topics: string[] | null, v = dv): KafkaRequestSpec => ({
    apiKey,
    apiVersion: v,
    correlationId: 15,
    topics,
  });
const listOffsets = kind(2, 5);
const offsetCommit = kind(8, 7);
const offsetFetch = kind(9, 5);
const createTopics = kind(19, 4);
const deleteTopics = kind(20, 3);

describe("Kafka proxy: verdicts on real frames", () => {
  test("produce to an allowed topic reaches the broker and gets error 0", async () => {
    const h = await startHarness(stage([{ role: "produce", topic: "orders" }]));
    try {
      assert.deepEqual(await ask(h, produce(["orders"])), [0]);
      assert.deepEqual(
        h.broker?.received.map((r) => [r.apiKey, r.correlationId, r.topics]),
        [[0, 11, ["orders"]]],
      );
      assert.deepEqual(h.events, [
        {
          type: "kafka",
          verdict: "forwarded",
          srcIdentity: 1001,
          dstIdentity: 2002,
          endpoint: "default/producer",
          direction: "egress",
          apiKey: 0,
          apiVersion: 3,
          correlationId: 11,
          topics: ["orders"],
        },
      ]);
    } finally {
      await h.close();
    }
  });

  test("produce to a denied topic gets TOPIC_AUTHORIZATION_FAILED and never reaches the broker", async () => {
    const h = await startHarness(stage([{ role: "produce", topic: "orders" }]));
    try {
      assert.deepEqual(await ask(h, produce(["payments"])), [AUTHZ]);
      assert.deepEqual(await ask(h, produce(["orders", "payments"])), [AUTHZ, AUTHZ]);
      assert.deepEqual(h.broker?.received, []);
      assert.equal(h.upstreamConnections(), 0);
      assert.deepEqual(
        h.events.map((e) => [e.verdict, e.reason, e.topics]),
        [
          ["denied", "no Kafka rule matched", ["payments"]],
          ["denied", "no Kafka rule matched", ["orders", "payments"]],
        ],
      );
    } finally {
      await h.close();
    }
  });

  test("every version we read: allowed answers and denials decode strictly", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]));
    try {
      const makers = {
        produce,
        fetch,
        metadata,
        listOffsets,
        offsetCommit,
        offsetFetch,
        createTopics,
        deleteTopics,
      };
      const max = { produce: 8, fetch: 11, metadata: 8, listOffsets: 5, offsetCommit: 7, offsetFetch: 5 };
      const specs = Object.entries({ ...max, createTopics: 4, deleteTopics: 3 }).flatMap(([name, m]) =>
        Array.from({ length: m + 1 }, (_, v) => [name as keyof typeof makers, v] as const),
      );
      for (const [name, v] of specs) {
        const mk = makers[name];
        assert.deepEqual(await ask(h, mk(["orders"], v)), [0], `${name} v${v} allowed`);
        assert.deepEqual(await ask(h, mk(["secret"], v)), [AUTHZ], `${name} v${v} denied`);
      }
      assert.equal(h.broker?.received.length, specs.length);
    } finally {
      await h.close();
    }
  });

  /** `reached`: the request got to the broker (a denied Metadata for every topic is answered with no topics). */
  const table: {
    name: string;
    rules: KafkaRule[];
    spec: KafkaRequestSpec;
    expect: number[] | "closed";
    reached: boolean;
  }[] = [
    {
      name: "role consume allows Fetch of its topic",
      rules: [{ role: "consume", topic: "orders" }],
      spec: fetch(["orders"]),
      expect: [0],
      reached: true,
    },
    {
      name: "role consume allows Metadata of its topic",
      rules: [{ role: "consume", topic: "orders" }],
      spec: metadata(["orders"]),
      expect: [0],
      reached: true,
    },
    {
      name: "role consume denies Produce",
      rules: [{ role: "consume", topic: "orders" }],
      spec: produce(["orders"]),
      expect: [AUTHZ],
      reached: false,
    },
    {
      name: "role consume denies Fetch of another topic",
      rules: [{ role: "consume", topic: "orders" }],
      spec: fetch(["payments"]),
      expect: [AUTHZ],
      reached: false,
    },
    {
      name: "a topic rule never grants Metadata for every topic",
      rules: [{ role: "consume", topic: "orders" }],
      spec: metadata(null),
      expect: [],
      reached: false,
    },
    {
      name: "role consume allows ApiVersions (no topics)",
      rules: [{ role: "consume", topic: "orders" }],
      spec: apiVersions(),
      expect: [],
      reached: true,
    },
    {
      name: "role produce allows Metadata for every topic when it names no topic",
      rules: [{ role: "produce" }],
      spec: metadata(null),
      expect: [],
      reached: true,
    },
    {
      name: "role produce denies Fetch",
      rules: [{ role: "produce" }],
      spec: fetch(["orders"]),
      expect: [AUTHZ],
      reached: false,
    },
    {
      name: "apiKey fetch allows Fetch of any topic",
      rules: [{ apiKey: "fetch" }],
      spec: fetch(["a", "b"]),
      expect: [0, 0],
      reached: true,
    },
    {
      name: "apiKey fetch denies Produce",
      rules: [{ apiKey: "fetch" }],
      spec: produce(["a"]),
      expect: [AUTHZ],
      reached: false,
    },
    {
      name: "apiKey with apiVersion allows that version",
      rules: [{ apiKey: "produce", apiVersion: 3 }],
      spec: produce(["a"], 3),
      expect: [0],
      reached: true,
    },
    {
      name: "apiKey with apiVersion denies another version",
      rules: [{ apiKey: "produce", apiVersion: 3 }],
      spec: produce(["a"], 5),
      expect: [AUTHZ],
      reached: false,
    },
    {
      name: "a denied ApiVersions has no error answer: closed",
      rules: [{ apiKey: "fetch" }],
      spec: apiVersions(),
      expect: "closed",
      reached: false,
    },
    {
      name: "clientID rule allows that client",
      rules: [{ clientID: "billing" }],
      spec: produce(["a"], 3, { clientId: "billing" }),
      expect: [0],
      reached: true,
    },
    {
      name: "clientID rule denies another client",
      rules: [{ clientID: "billing" }],
      spec: produce(["a"], 3, { clientId: "intruder" }),
      expect: [AUTHZ],
      reached: false,
    },
    {
      name: "clientID rule denies a null client id",
      rules: [{ clientID: "billing" }],
      spec: produce(["a"], 3, { clientId: null }),
      expect: [AUTHZ],
      reached: false,
    },
    {
      name: "topics split over two rules are all allowed",
      rules: [{ topic: "a" }, { topic: "b" }],
      spec: produce(["a", "b"]),
      expect: [0, 0],
      reached: true,
    },
  ];
  for (const c of table) {
    test(c.name, async () => {
      const h = await startHarness(stage(c.rules));
      try {
        assert.deepEqual(await ask(h, c.spec), c.expect);
        assert.deepEqual(
          h.broker?.received.map((r) => r.apiKey),
          c.reached ? [c.spec.apiKey] : [],
        );
        assert.deepEqual(
          h.events.map((e) => e.verdict),
          [c.reached ? "forwarded" : "denied"],
        );
      } finally {
        await h.close();
      }
    });
  }

  test("allowAll (an L4 allow shadows the rules): everything is forwarded and recorded", async () => {
    const h = await startHarness(stage([{ topic: "orders" }], { allowAll: true }));
    try {
      assert.deepEqual(await ask(h, produce(["secret"])), [0]);
      assert.deepEqual(
        h.events.map((e) => e.verdict),
        ["forwarded"],
      );
    } finally {
      await h.close();
    }
  });
});

describe("Kafka proxy: the `also` stage", () => {
  const both = stage([{ topic: "orders" }, { topic: "payments" }], { also: stage([{ topic: "orders" }]) });
  const cases: {
    name: string;
    policy: L7LookupResult;
    spec: KafkaRequestSpec;
    expect: number[] | "closed";
  }[] = [
    {
      name: "a request both stages allow is forwarded",
      policy: both,
      spec: produce(["orders"]),
      expect: [0],
    },
    {
      name: "a request only the first stage allows is denied",
      policy: both,
      spec: produce(["payments"]),
      expect: [AUTHZ],
    },
    {
      name: "an allowAll first stage still needs the second",
      policy: stage([], { allowAll: true, also: stage([{ topic: "orders" }]) }),
      spec: produce(["payments"]),
      expect: [AUTHZ],
    },
    {
      name: "a second stage of another parser fails closed",
      policy: stage([{}], { also: { spec: { ...kafkaSpec([]), parser: "http" }, allowAll: true } }),
      spec: produce(["orders"]),
      expect: "closed",
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const h = await startHarness(c.policy);
      try {
        assert.deepEqual(await ask(h, c.spec), c.expect);
      } finally {
        await h.close();
      }
    });
  }
});

describe("Kafka proxy: pipelining and order", () => {
  test("allowed, denied, allowed back to back: answers in order with their correlation ids", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]));
    const c = await connect(h.port);
    try {
      const specs = [
        produce(["orders"], 3, { correlationId: 1 }),
        produce(["secret"], 3, { correlationId: 2 }),
        fetch(["orders"], 11),
        metadata(["secret"], 8),
        metadata(["orders"], 8),
      ].map((s, i) => ({ ...s, correlationId: i + 1 }));
      c.send(...specs);
      const got = [];
      for (const s of specs) {
        const d = await c.answer(s);
        got.push([d.correlationId, d.topics.map((t) => t.errorCode)]);
      }
      assert.deepEqual(got, [
        [1, [0]],
        [2, [AUTHZ]],
        [3, [0]],
        [4, [AUTHZ]],
        [5, [0]],
      ]);
      assert.deepEqual(
        h.broker?.received.map((r) => r.correlationId),
        [1, 3, 5],
      );
      assert.equal(h.upstreamConnections(), 1);
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("a denial waits for the slow broker's earlier answer", async () => {
    // A broker that answers each request 100 ms late with a bare correlation id.
    const h = await startHarness(stage([{ topic: "orders" }]), {
      raw: (s) => {
        s.on("data", (d: Buffer) => {
          const corr = d.readInt32BE(8);
          setTimeout(() => s.write(Buffer.concat([i32(4), i32(corr)])), 100);
        });
      },
    });
    const c = await connect(h.port);
    try {
      c.send({ ...produce(["orders"]), correlationId: 7 }, { ...produce(["secret"]), correlationId: 8 });
      const order = [];
      for (let i = 0; i < 2; i++) {
        const f = await c.next();
        assert.ok(typeof f === "object");
        order.push(f.correlationId);
      }
      assert.deepEqual(order, [7, 8]);
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("more requests than maxOutstanding: the client is paused, not refused, and all answers come", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]), { limits: { maxOutstanding: 2 } });
    const c = await connect(h.port);
    try {
      const specs = Array.from({ length: 20 }, (_, i) =>
        i % 3 === 1 ? { ...fetch(["secret"]), correlationId: i } : { ...fetch(["orders"]), correlationId: i },
      );
      c.send(...specs);
      const got = [];
      for (const s of specs) got.push((await c.answer(s)).correlationId);
      assert.deepEqual(
        got,
        specs.map((s) => s.correlationId),
      );
      assert.equal(h.broker?.received.length, 13);
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("a client flooding requests while answers are owed is no longer read", async () => {
    // A broker that never answers: the one allowed request's answer stays owed.
    const h = await startHarness(stage([{ topic: "orders" }]), {
      limits: { maxOutstanding: 1 },
      raw: () => undefined,
    });
    const c = await connect(h.port);
    try {
      const big = (i: number): KafkaRequestSpec => ({
        ...produce(["orders"]),
        correlationId: i,
        records: Buffer.alloc(1 << 20),
      });
      c.send(...Array.from({ length: 24 }, (_, i) => big(i)));
      await new Promise((r) => setTimeout(r, 300));
      const read = h.proxySockets[0]?.bytesRead ?? 0;
      assert.ok(read >= 1 << 20 && read < 4 << 20, `proxy read ${read} bytes`);
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("a client that half-closes after its requests still gets every answer, then the close", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]));
    const c = await connect(h.port);
    try {
      c.send({ ...fetch(["orders"]), correlationId: 1 }, { ...fetch(["secret"]), correlationId: 2 });
      c.sock.end();
      assert.equal((await c.answer(fetch([]))).correlationId, 1);
      assert.equal((await c.answer(fetch([]))).correlationId, 2);
      assert.equal(await c.next(), "closed");
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("a broker that does not read stops the client from being read", async () => {
    const h = await startHarness(stage([{}]), { raw: (s) => s.pause() });
    const c = await connect(h.port);
    try {
      const big = (i: number): KafkaRequestSpec => ({
        ...produce(["orders"]),
        correlationId: i,
        records: Buffer.alloc(1 << 20),
      });
      c.send(...Array.from({ length: 32 }, (_, i) => big(i)));
      await new Promise((r) => setTimeout(r, 500));
      const read = h.proxySockets[0]?.bytesRead ?? 0;
      assert.ok(read >= 1 << 20 && read < 12 << 20, `proxy read ${read} bytes`);
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("a client that does not read its answers stops the broker from being read", async () => {
    // One 64 MiB answer to the first request. Driven by byte counts and
    // backpressure events, never by elapsed time (it used to sample after
    // 500 ms, which a busy machine made fail): the proxy must stop reading
    // the broker when its client does not read, hold no more than a bound
    // in memory at any moment, and deliver the whole answer once the client
    // reads.
    const size = 64 << 20;
    const HELD_BOUND = 1 << 20;
    const h = await startHarness(stage([{}]), {
      raw: (s) =>
        s.once("data", (d: Buffer) =>
          s.write(Buffer.concat([i32(size), d.subarray(8, 12), Buffer.alloc(size - 4)])),
        ),
    });
    const client = net.connect(h.port, "127.0.0.1");
    client.on("error", () => undefined);
    client.pause();
    const safety = setTimeout(() => client.destroy(), 30_000);
    try {
      await new Promise<void>((r) => client.once("connect", r));
      client.write(encodeKafkaRequest(produce(["orders"])));
      // After each read from the broker (the proxy's handler runs first): what
      // the proxy holds for its client is bounded, and the first time it has
      // paused the broker while its client cannot take more, phase 1 ends.
      let maxHeld = 0;
      const stalled = await new Promise<number>((resolve, reject) => {
        const watch = (): void => {
          const up = h.upstreamSockets[0];
          const down = h.proxySockets[0];
          if (!up || !down) return void setImmediate(watch);
          up.on("data", () => {
            maxHeld = Math.max(maxHeld, down.writableLength);
            if (maxHeld > HELD_BOUND) reject(new Error(`the proxy holds ${maxHeld} bytes for its client`));
            if (up.isPaused() && down.writableNeedDrain) resolve(up.bytesRead);
          });
          up.once("close", () => reject(new Error("the broker connection closed in phase 1")));
        };
        watch();
      });
      assert.ok(
        stalled > 0 && stalled < 24 << 20,
        `proxy read ${stalled} bytes from the broker before it paused`,
      );
      // Phase 2: the client reads; the whole answer arrives, intact.
      const got = await new Promise<Buffer>((resolve, reject) => {
        let n = 0;
        let first = Buffer.alloc(0);
        client.on("data", (d: Buffer) => {
          if (first.length < 8) first = Buffer.concat([first, d.subarray(0, 8 - first.length)]);
          n += d.length;
          if (n >= 4 + size) resolve(Buffer.concat([first, i32(n)]));
        });
        client.once("close", () => reject(new Error(`closed after ${n} bytes`)));
        client.resume();
      });
      assert.equal(got.readInt32BE(0), size);
      assert.equal(got.readInt32BE(4), produce(["orders"]).correlationId);
      assert.equal(got.readInt32BE(8), 4 + size, "exactly the answer, nothing more");
      assert.ok(maxHeld <= HELD_BOUND, `the proxy held up to ${maxHeld} bytes for its client`);
    } finally {
      clearTimeout(safety);
      client.destroy();
      await h.close();
    }
  });

  test("produce with acks=0 is forwarded without awaiting an answer; the next answer still matches", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]));
    const c = await connect(h.port);
    try {
      c.send(
        { ...produce(["orders"], 3, { acks: 0 }), correlationId: 1 },
        { ...metadata(["orders"]), correlationId: 2 },
      );
      assert.equal((await c.answer(metadata(["orders"]))).correlationId, 2);
      assert.deepEqual(
        h.broker?.received.map((r) => r.correlationId),
        [1, 2],
      );
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("a denied produce with acks=0 closes the connection after the earlier answers", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]));
    const c = await connect(h.port);
    try {
      c.send(
        { ...metadata(["orders"]), correlationId: 1 },
        { ...produce(["secret"], 3, { acks: 0 }), correlationId: 2 },
      );
      assert.equal((await c.answer(metadata(["orders"]))).correlationId, 1);
      assert.equal(await c.next(), "closed");
      assert.deepEqual(
        h.broker?.received.map((r) => r.correlationId),
        [1],
      );
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("a large produce (4 MiB of records) passes through intact", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]));
    try {
      const records = Buffer.alloc(4 * 1024 * 1024, 7);
      assert.deepEqual(await ask(h, produce(["orders"], 3, { records })), [0]);
      assert.equal(h.broker?.received.length, 1);
    } finally {
      await h.close();
    }
  });

  test("bytes read before the handler took over (head) are judged first", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]), { useHead: true });
    const c = await connect(h.port);
    try {
      c.send({ ...produce(["orders"]), correlationId: 1 });
      assert.deepEqual((await c.answer(produce(["orders"]))).topics[0]?.errorCode, 0);
      c.send({ ...produce(["secret"]), correlationId: 2 });
      assert.deepEqual((await c.answer(produce(["secret"]))).topics[0]?.errorCode, AUTHZ);
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });
});

describe("Kafka proxy: a consumer group under `role: consume, topic: orders`", () => {
  const consume = stage([{ role: "consume", topic: "orders" }]);

  test("pipelined ListOffsets, OffsetFetch, OffsetCommit: orders pass, other topics get 29, all in order", async () => {
    const h = await startHarness(consume);
    const c = await connect(h.port);
    try {
      const specs = [
        listOffsets(["orders"]),
        listOffsets(["payments"], 1),
        offsetFetch(["orders"]),
        offsetFetch(["payments"], 1),
        fetch(["orders"], 11),
        offsetCommit(["orders"]),
        offsetCommit(["payments"], 2),
        offsetCommit(["orders", "payments"]),
        listOffsets(["orders"], 0),
      ].map((s, i) => ({ ...s, correlationId: i + 1 }));
      c.send(...specs);
      const got = [];
      for (const s of specs) {
        const d = await c.answer(s);
        got.push([d.correlationId, d.topics.map((t) => [t.name, t.partitions.map((p) => p.errorCode)])]);
      }
      assert.deepEqual(got, [
        [1, [["orders", [0]]]],
        [2, [["payments", [AUTHZ]]]],
        [3, [["orders", [0]]]],
        [4, [["payments", [AUTHZ]]]],
        [5, [["orders", [0]]]],
        [6, [["orders", [0]]]],
        [7, [["payments", [AUTHZ]]]],
        [
          8,
          [
            ["orders", [AUTHZ]],
            ["payments", [AUTHZ]],
          ],
        ],
        [9, [["orders", [0]]]],
      ]);
      assert.deepEqual(
        h.broker?.received.map((r) => [r.correlationId, r.apiKey, r.topics]),
        [
          [1, 2, ["orders"]],
          [3, 9, ["orders"]],
          [5, 1, ["orders"]],
          [6, 8, ["orders"]],
          [9, 2, ["orders"]],
        ],
      );
      assert.deepEqual(
        h.events.map((e) => [e.correlationId, e.verdict]),
        specs.map((s) => [
          s.correlationId,
          [1, 3, 5, 6, 9].includes(s.correlationId) ? "forwarded" : "denied",
        ]),
      );
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("OffsetFetch for every topic is denied with a top-level 29, and the connection stays open", async () => {
    const h = await startHarness(consume);
    const c = await connect(h.port);
    try {
      c.send(
        { ...offsetFetch(null, 3), correlationId: 1 },
        { ...offsetFetch(["orders"], 3), correlationId: 2 },
      );
      const all = await c.answer(offsetFetch(null, 3));
      assert.deepEqual([all.correlationId, all.errorCode, all.topics], [1, AUTHZ, []]);
      const mine = await c.answer(offsetFetch(["orders"], 3));
      assert.deepEqual([mine.correlationId, mine.errorCode], [2, 0]);
      assert.deepEqual(
        h.broker?.received.map((r) => r.correlationId),
        [2],
      );
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  const admin: { name: string; rules: KafkaRule[]; spec: KafkaRequestSpec; expect: number[] }[] = [
    {
      name: "role consume does not create topics, even its own: 29 per topic",
      rules: [{ role: "consume", topic: "orders" }],
      spec: createTopics(["orders"]),
      expect: [AUTHZ],
    },
    {
      name: "role consume does not delete topics: 29 per topic",
      rules: [{ role: "consume", topic: "orders" }],
      spec: deleteTopics(["orders", "audit"], 0),
      expect: [AUTHZ, AUTHZ],
    },
    {
      name: "apiKey createtopics with a topic creates that topic",
      rules: [{ apiKey: "createtopics", topic: "orders" }],
      spec: createTopics(["orders"], 0),
      expect: [0],
    },
    {
      name: "apiKey createtopics with a topic does not create another",
      rules: [{ apiKey: "createtopics", topic: "orders" }],
      spec: createTopics(["orders", "secret"], 2),
      expect: [AUTHZ, AUTHZ],
    },
    {
      name: "apiKey deletetopics with a topic deletes that topic",
      rules: [{ apiKey: "deletetopics", topic: "orders" }],
      spec: deleteTopics(["orders"]),
      expect: [0],
    },
  ];
  for (const c of admin) {
    test(c.name, async () => {
      const h = await startHarness(stage(c.rules));
      try {
        assert.deepEqual(await ask(h, c.spec), c.expect);
        assert.equal(h.broker?.received.length, c.expect[0] === 0 ? 1 : 0);
      } finally {
        await h.close();
      }
    });
  }
});

describe("Kafka proxy: policy per request, fail closed", () => {
  test("a policy change applies between two requests on one connection", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]));
    const c = await connect(h.port);
    try {
      c.send({ ...produce(["orders"]), correlationId: 1 });
      assert.equal((await c.answer(produce(["orders"]))).topics[0]?.errorCode, 0);
      h.setPolicy(stage([{ topic: "payments" }]));
      c.send({ ...produce(["orders"]), correlationId: 2 });
      assert.equal((await c.answer(produce(["orders"]))).topics[0]?.errorCode, AUTHZ);
      h.setPolicy(undefined);
      c.send({ ...produce(["payments"]), correlationId: 3 });
      assert.equal(await c.next(), "closed");
      assert.deepEqual(
        h.broker?.received.map((r) => r.correlationId),
        [1],
      );
      assert.deepEqual(
        h.events.map((e) => [e.verdict, e.correlationId]),
        [
          ["forwarded", 1],
          ["denied", 2],
          ["error", 3],
        ],
      );
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  const closedCases: { name: string; policy: Policy }[] = [
    { name: "no policy known", policy: undefined },
    { name: "the lookup throws", policy: "throw" },
    {
      name: "the policy is for another parser",
      policy: { spec: { ...kafkaSpec([{}]), parser: "http" }, allowAll: true },
    },
  ];
  for (const c of closedCases) {
    test(`${c.name}: the connection is closed and nothing reaches the broker`, async () => {
      const h = await startHarness(c.policy);
      try {
        assert.equal(await ask(h, produce(["orders"])), "closed");
        assert.deepEqual(h.broker?.received, []);
        assert.deepEqual(
          h.events.map((e) => [e.type, e.verdict, e.reason]),
          [["kafka", "error", "no Kafka policy for this connection"]],
        );
      } finally {
        await h.close();
      }
    });
  }
});

describe("Kafka proxy: hostile input", () => {
  const valid = encodeKafkaRequest({ ...produce(["orders"]), correlationId: 1 });
  const cases: { name: string; bytes: Buffer; reason: RegExp; limits?: Partial<KafkaProxyLimits> }[] = [
    {
      name: "an oversized length",
      bytes: i32(0x7fffffff),
      reason: /^malformed request: request size 2147483647$/,
    },
    { name: "a negative length", bytes: i32(-1), reason: /request size -1/ },
    {
      name: "a frame over the configured limit",
      bytes: valid,
      reason: /request size/,
      limits: { maxRequestBytes: 64 },
    },
    {
      name: "garbage (an HTTP request)",
      bytes: Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      reason: /request size/,
    },
    {
      name: "a negative API key",
      bytes: Buffer.concat([i32(10), Buffer.from([0xff, 0xff, 0, 0, 0, 0, 0, 1, 0xff, 0xff])]),
      reason: /negative/,
    },
    {
      name: "a topic count larger than the frame",
      bytes: Buffer.concat([
        i32(18),
        Buffer.from([0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff]),
        i32(0x7fffffff),
        i32(0),
      ]),
      reason: /shorter/,
    },
    {
      name: "a flexible version we cannot read (Produce v9)",
      bytes: encodeKafkaRequest({ ...produce([]), apiVersion: 9, body: Buffer.alloc(0) }),
      reason: /version 9 is not supported/,
    },
    {
      name: "a flexible version we cannot read (ListOffsets v6)",
      bytes: encodeKafkaRequest({ ...listOffsets([]), apiVersion: 6, body: Buffer.alloc(0) }),
      reason: /^malformed request: api key 2 version 6 is not supported$/,
    },
    {
      name: "an OffsetFetch v1 with null topics",
      bytes: encodeKafkaRequest(offsetFetch(null, 1)),
      reason: /^malformed request: OffsetFetch v1 with null topics/,
    },
    {
      name: "a valid request followed by garbage",
      bytes: Buffer.concat([valid, i32(3)]),
      reason: /request size 3/,
    },
  ];
  for (const c of cases) {
    test(`${c.name}: closed with an error event, the proxy keeps serving`, async () => {
      const h = await startHarness(stage([{}]), c.limits ? { limits: c.limits } : {});
      const cl = await connect(h.port);
      try {
        cl.sock.write(c.bytes);
        let f = await cl.next();
        if (typeof f === "object") f = await cl.next(); // the valid request's answer comes first
        assert.equal(f, "closed");
        const err = h.events.filter((e) => e.verdict === "error");
        assert.equal(err.length, 1);
        assert.match(err[0]?.reason ?? "", c.reason);
        assert.ok(!h.broker?.received.some((r) => r.correlationId !== 1));
        // A new connection is served: the process did not crash.
        assert.deepEqual(await ask(h, metadata(["orders"])), [0]);
      } finally {
        cl.sock.destroy();
        await h.close();
      }
    });
  }

  test("a broker answering the wrong correlation id closes both sides", async () => {
    const h = await startHarness(stage([{}]), {
      raw: (s) => s.on("data", () => s.write(Buffer.concat([i32(8), i32(999), i32(0)]))),
    });
    try {
      assert.equal(await ask(h, produce(["orders"])), "closed");
      assert.equal(h.events.at(-1)?.reason, "broker response for correlation id 999, expected 11");
    } finally {
      await h.close();
    }
  });

  test("a broker sending bytes nobody asked for closes both sides", async () => {
    const h = await startHarness(stage([{}]), {
      raw: (s) =>
        s.on("data", () => {
          s.write(Buffer.concat([i32(4), i32(11)]));
          setTimeout(() => s.write(Buffer.concat([i32(4), i32(11)])), 50);
        }),
    });
    const c = await connect(h.port);
    try {
      c.send(produce(["orders"]));
      const f = await c.next();
      assert.ok(typeof f === "object" && f.correlationId === 11);
      assert.equal(await c.next(), "closed");
      assert.equal(h.events.at(-1)?.reason, "broker sent a response nobody asked for");
    } finally {
      c.sock.destroy();
      await h.close();
    }
  });

  test("events never carry payloads: only the allowed keys", async () => {
    const h = await startHarness(stage([{ topic: "orders" }]));
    try {
      await ask(h, produce(["orders"], 3, { records: Buffer.from("card=4111111111111111") }));
      await ask(h, produce(["secret"], 3, { records: Buffer.from("card=4111111111111111") }));
      const keys = new Set(h.events.flatMap((e) => Object.keys(e)));
      const allowed = [
        "type",
        "verdict",
        "reason",
        "srcIdentity",
        "dstIdentity",
        "endpoint",
        "direction",
        "apiKey",
        "apiVersion",
        "topics",
        "correlationId",
      ];
      assert.deepEqual(
        [...keys].filter((k) => !allowed.includes(k)),
        [],
      );
      assert.ok(!JSON.stringify(h.events).includes("4111"));
    } finally {
      await h.close();
    }
  });
});

describe("Kafka proxy: version negotiation", () => {
  for (const v of [0, 1, 2, 3]) {
    test(`ApiVersions v${v} through the proxy advertises no version newer than the parser reads`, async () => {
      // Kafka 4.0's ranges for the consumer-group and topic-admin kinds.
      const advertise: Record<number, [number, number]> = {
        0: [0, 11],
        1: [4, 16],
        2: [1, 9],
        3: [0, 12],
        8: [2, 9],
        9: [1, 9],
        18: [0, 3],
        12: [0, 4],
        19: [2, 7],
        20: [1, 6],
      };
      const h = await startHarness(stage([{}]), { advertise });
      const c = await connect(h.port);
      try {
        c.send(apiVersions(v));
        const d = await c.answer(apiVersions(v));
        assert.equal(d.errorCode, 0);
        assert.deepEqual(
          d.apiVersions?.map((a) => [a.apiKey, a.min, a.max]),
          [
            [0, 0, 8],
            [1, 4, 11],
            [2, 1, 5],
            [3, 0, 8],
            [8, 2, 7],
            [9, 1, 5],
            [12, 0, 4],
            [18, 0, 3],
            [19, 2, 4],
            [20, 1, 3],
          ],
        );
      } finally {
        c.sock.destroy();
        await h.close();
      }
    });
  }
});
