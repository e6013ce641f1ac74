/**
 * DnsOrigins (src/proxy/runtime/dns-origins.ts) without the kernel: when a UDP source's conntrack
 * answer is reused and when it is asked again, the bound on what it keeps, and answers of a broker
 * that lies about the entry's id. The kernel's side (the ct id in the datagram's mark, the real
 * broker, the attack case) is test/proxy/dns-ct-id.test.ts.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { startBroker, type Original } from "../../src/proxy/runtime/broker-client.js";
import { DnsOrigins } from "../../src/proxy/runtime/dns-origins.js";
import { CT_IDS } from "./fixtures/hostile-broker.js";

const LOCAL = { address: "10.0.0.9", port: 15053 };

/** A broker whose entries are set by the test: each source's current entry (address, ct id). */
function fakeBroker(): {
  entries: Map<number, Original>;
  asked: number;
  lookup: (proto: "tcp" | "udp", local: unknown, remote: { port: number }) => Promise<Original | undefined>;
} {
  const b = {
    entries: new Map<number, Original>(),
    asked: 0,
    lookup: (_p: "tcp" | "udp", _l: unknown, remote: { port: number }) => {
      b.asked++;
      return Promise.resolve(b.entries.get(remote.port));
    },
  };
  return b;
}

const entry = (address: string, ctId: number): Original => ({ address, port: 53, mark: 0, ctId });
const src = (port: number, mark?: number) => ({ address: "10.1.0.2", port, ...(mark !== undefined ? { mark } : {}) }); // prettier-ignore

async function of(o: DnsOrigins, s: ReturnType<typeof src>, proto: "UDP" | "TCP" = "UDP"): Promise<string> {
  const r = await o.of(s, proto);
  return r === undefined ? "none" : `${r.address}#${r.ctId}`;
}

describe("DnsOrigins", () => {
  const cases: {
    name: string;
    steps: { port: number; mark?: number; proto?: "UDP" | "TCP"; entry?: Original; want: string }[];
    asked: number;
  }[] = [
    {
      name: "a datagram of the entry the broker read is answered from the cache",
      steps: [
        { port: 1000, mark: 11, entry: entry("10.2.0.1", 11), want: "10.2.0.1#11" },
        { port: 1000, mark: 11, want: "10.2.0.1#11" },
      ],
      asked: 1,
    },
    {
      name: "another id from the same source (the entry was replaced) asks, and the new answer counts",
      steps: [
        { port: 1000, mark: 11, entry: entry("10.2.0.1", 11), want: "10.2.0.1#11" },
        { port: 1000, mark: 12, entry: entry("10.2.0.2", 12), want: "10.2.0.2#12" },
        { port: 1000, mark: 12, want: "10.2.0.2#12" },
      ],
      asked: 2,
    },
    {
      name: "mark 0 (no id) always asks",
      steps: [
        { port: 1000, mark: 0, entry: entry("10.2.0.1", 11), want: "10.2.0.1#11" },
        { port: 1000, want: "10.2.0.1#11" },
        { port: 1000, mark: 0, want: "10.2.0.1#11" },
      ],
      asked: 3,
    },
    {
      name: "an answer whose id is not the datagram's is used once, never kept",
      steps: [
        { port: 1000, mark: 11, entry: entry("10.2.0.1", 99), want: "10.2.0.1#99" },
        { port: 1000, mark: 11, want: "10.2.0.1#99" },
        { port: 1000, mark: 99, want: "10.2.0.1#99" },
      ],
      asked: 3,
    },
    {
      name: "TCP always asks (one lookup per connection)",
      steps: [
        { port: 1000, mark: 11, proto: "TCP", entry: entry("10.2.0.1", 11), want: "10.2.0.1#11" },
        { port: 1000, mark: 11, proto: "TCP", want: "10.2.0.1#11" },
      ],
      asked: 2,
    },
    {
      name: "no entry: nothing, and nothing kept",
      steps: [
        { port: 1000, mark: 11, want: "none" },
        { port: 1000, mark: 11, want: "none" },
      ],
      asked: 2,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const b = fakeBroker();
      const o = new DnsOrigins(b, LOCAL);
      for (const s of c.steps) {
        if (s.entry) b.entries.set(s.port, s.entry);
        assert.equal(await of(o, src(s.port, s.mark), s.proto), s.want);
      }
      assert.equal(b.asked, c.asked);
      assert.deepEqual(o.stats, { lookups: c.asked, hits: c.steps.length - c.asked });
    });
  }

  test("keeps at most `max` sources, the oldest out first", async () => {
    const b = fakeBroker();
    const o = new DnsOrigins(b, LOCAL, 3);
    for (let p = 1; p <= 4; p++) {
      b.entries.set(p, entry("10.2.0.1", p));
      await of(o, src(p, p));
    }
    b.asked = 0;
    for (const p of [2, 3, 4, 1]) await of(o, src(p, p));
    // 2, 3, 4 from the cache; 1 went out when 4 came in.
    assert.equal(b.asked, 1);
  });

  test("a broker's answer whose ct id is not a 32-bit unsigned integer is refused whole", async () => {
    const broker = await startBroker(fileURLToPath(new URL("./fixtures/hostile-broker.js", import.meta.url)), () => undefined); // prettier-ignore
    const got: string[] = [];
    try {
      for (let i = 0; i < CT_IDS.length; i++) {
        const r = await broker.lookup("udp", LOCAL, { address: "10.1.0.2", port: 1000 + i });
        got.push(r === undefined ? "refused" : `ctId ${r.ctId}`);
      }
    } finally {
      broker.close();
    }
    assert.deepEqual(got, [
      "refused", // -1
      "refused", // 2^32
      "refused", // 1.5
      "refused", // "7"
      "refused", // null
      "refused", // an object
      "ctId 7",
      "ctId 4294967295",
      "ctId 0", // absent (a broker of an earlier version): never cached
    ]);
  });
});
