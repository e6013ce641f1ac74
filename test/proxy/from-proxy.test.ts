/**
 * The agent checks every address the proxy process sends (proxy/runtime/protocol.ts fromProxy with
 * validate.ts and the shared guard, abi/addr-port.ts): a real child process sends hostile messages
 * over a real IPC channel (Node's JSON serialisation, as the proxy's), the agent's side reads each
 * as the supervisor does (fromProxy, drops counted by reason in an IpcDrops), and:
 * - an L7 event whose source or destination is not an address is dropped alone, not its batch;
 * - a DNS answer with one address that is not one is refused whole (its addresses would become
 *   FQDN identities), one of a dns-seen alone;
 * - an event's DNS answers (Hubble's dns.ips) are kept only when each is an address;
 * - what an honest proxy sends passes: "" with its port for a socket that had no address (reset
 *   before the proxy asked) or a DNS event without its ends, IPv6, IPv4-mapped;
 * - each reason is logged once, and nothing the proxy sent is in the log.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Logger } from "pino";
import { IpcDrops } from "../../src/abi/ipc-drops.js";
import { fromProxy, MAX_L7_BATCH, type FromProxy, type ProxyDrop } from "../../src/proxy/runtime/protocol.js";
import { HOSTILE_ADDR_PORTS } from "../abi/hostile-addr-ports.js";
import { overIpc } from "../support/over-ipc.js";
import { L7_DST as DST, L7_EVENT as EVENT, L7_FLOW as FLOW, L7_SRC as SRC } from "./fixtures/l7-flow.js";

const ANSWER = { endpoint: "default/client", name: "allowed.example.com.", ips: ["198.51.100.7", "2001:db8::7"], ttl: 30 }; // prettier-ignore

/** What a DNS answer's list of addresses must refuse. */
const HOSTILE_IPS: readonly { name: string; value: unknown }[] = [
  { name: "a name, not an address", value: "evil.example" },
  { name: "an address with a zone", value: "fe80::1%eth0" },
  { name: "a leading space", value: " 198.51.100.7" },
  { name: "an IPv4 address with a leading zero", value: "010.0.0.2" },
  { name: "a huge string (1 MiB)", value: "1".repeat(1 << 20) },
  { name: "a number", value: 3325256711 },
  { name: "a prefix, not an address", value: "198.51.100.0/24" },
  { name: "empty", value: "" },
  { name: "a newline after it", value: "198.51.100.7\n" },
  { name: "null (NaN on the wire)", value: null },
];

/** The agent's side as the supervisor attaches it: fromProxy, drops counted (and logged once). */
function receiver(): {
  receive: (m: unknown) => void;
  got: FromProxy[];
  drops: IpcDrops<ProxyDrop>;
  logged: unknown[];
} {
  // prettier-ignore
  const got: FromProxy[] = [];
  const logged: unknown[] = [];
  const logger = { warn: (o: unknown, msg?: string) => void logged.push([o, msg]) } as unknown as Pick<Logger, "warn">; // prettier-ignore
  const drops = new IpcDrops<ProxyDrop>("proxy", logger);
  const receive = (raw: unknown): void => {
    const m = fromProxy(raw, (why) => drops.add(why));
    if (m) got.push(m);
  };
  return { receive, got, drops, logged };
}

describe("the agent checks the addresses the proxy process sends (over real IPC)", () => {
  test("what an honest proxy sends passes: IPv4, IPv6, IPv4-mapped, and a socket with no address", async () => {
    const r = receiver();
    const honest = [
      FLOW,
      { event: EVENT, src: { address: "fd00::5", port: 1 }, dst: { address: "fd00::6", port: 443 } },
      { event: EVENT, src: { address: "::ffff:10.200.0.5", port: 1 }, dst: DST },
      // main.ts: `remoteAddress ?? ""` after a reset, and a DNS event without its ends.
      { event: EVENT, src: { address: "", port: 0 }, dst: DST },
      { event: EVENT, src: { address: "", port: 0 }, dst: { address: "", port: 0 } },
    ];
    await overIpc(r.receive, [{ type: "l7-batch", events: honest }, { type: "l7", ...FLOW }, { type: "dns-answer", id: 1, ...ANSWER }]); // prettier-ignore
    assert.deepEqual(r.got, [
      { type: "l7-batch", events: honest },
      { type: "l7", ...FLOW },
      { type: "dns-answer", id: 1, ...ANSWER },
    ]);
    assert.deepEqual(r.drops.view(), {});
  });

  const noAddress = [
    { name: 'address "" with no port', value: { address: "" } },
    { name: 'address "" with a port out of range', value: { address: "", port: 70000 } },
    { name: "address a space", value: { address: " ", port: 0 } },
  ];
  for (const h of [...HOSTILE_ADDR_PORTS, ...noAddress])
    test(`an L7 end refused: ${h.name}; as source or destination, alone in a batch or whole`, async () => {
      const r = receiver();
      await overIpc(r.receive, [
        { type: "l7-batch", events: [FLOW, { event: EVENT, src: h.value, dst: DST }, FLOW] },
        { type: "l7-batch", events: [FLOW, { event: EVENT, src: SRC, dst: h.value }, FLOW] },
        { type: "l7", event: EVENT, src: SRC, dst: h.value },
      ]);
      const batch = { type: "l7-batch", events: [FLOW, FLOW] };
      assert.deepEqual(r.got, [batch, batch], "only the hostile event is dropped, not its batch");
      assert.deepEqual(r.drops.view(), { address: 3 });
    });

  for (const h of HOSTILE_IPS)
    test(`a DNS answer's address refused: ${h.name}; the answer whole, one of a dns-seen alone`, async () => {
      const r = receiver();
      const bad = { ...ANSWER, ips: ["198.51.100.7", h.value] };
      await overIpc(r.receive, [
        { type: "dns-answer", id: 7, ...bad },
        { type: "dns-seen", answers: [ANSWER, bad, ANSWER] },
      ]);
      assert.deepEqual(r.got, [{ type: "dns-seen", answers: [ANSWER, ANSWER] }]);
      assert.deepEqual(r.drops.view(), { "dns answer": 2 });
    });

  test("an event's DNS answers (the flow's dns.ips) are kept only when each is an address", async () => {
    const r = receiver();
    const dns = { ...EVENT, type: "dns", query: "allowed.example.com.", rcode: "NOERROR", answers: ["198.51.100.7", "2001:db8::7"] }; // prettier-ignore
    const { answers: _, ...without } = dns;
    await overIpc(r.receive, [
      { type: "l7", event: dns, src: SRC, dst: DST },
      { type: "l7", event: { ...dns, answers: ["198.51.100.7", "<script>"] }, src: SRC, dst: DST },
      { type: "l7", event: { ...dns, answers: ["fe80::1%eth0"] }, src: SRC, dst: DST },
    ]);
    assert.deepEqual(r.got, [
      { type: "l7", event: dns, src: SRC, dst: DST },
      { type: "l7", event: without, src: SRC, dst: DST },
      { type: "l7", event: without, src: SRC, dst: DST },
    ]);
  });

  test("the DNS answer's TTL, CNAMEs and record types and Kafka's API version reach the agent (flows show them)", async () => {
    const r = receiver();
    const dns = { ...EVENT, type: "dns", query: "www.example.com.", rcode: "NOERROR", answers: ["198.51.100.7"], ttl: 30, cnames: ["edge.example.net."], rrtypes: ["CNAME", "A"] }; // prettier-ignore
    const kafka = { ...EVENT, type: "kafka", apiKey: 0, apiVersion: 9, correlationId: 4, topics: ["orders"] };
    await overIpc(r.receive, [{ type: "l7-batch", events: [{ ...FLOW, event: dns }, { ...FLOW, event: kafka }] }]); // prettier-ignore
    assert.deepEqual(r.got, [
      {
        type: "l7-batch",
        events: [
          { ...FLOW, event: dns },
          { ...FLOW, event: kafka },
        ],
      },
    ]);
    // Out of their bounds: left out, the event kept.
    const odd = { ...dns, ttl: -1, cnames: [7], rrtypes: ["A".repeat(17)] };
    const oddKafka = { ...kafka, apiVersion: 0x8000 };
    const r2 = receiver();
    await overIpc(r2.receive, [{ type: "l7-batch", events: [{ ...FLOW, event: odd }, { ...FLOW, event: oddKafka }] }]); // prettier-ignore
    const { ttl: _t, cnames: _c, rrtypes: _r, ...dnsLeft } = dns;
    const { apiVersion: _v, ...kafkaLeft } = kafka;
    assert.deepEqual(r2.got, [{ type: "l7-batch", events: [{ ...FLOW, event: dnsLeft }, { ...FLOW, event: kafkaLeft }] }]); // prettier-ignore
  });

  test("refused whole: a batch that is not one, a message of no known type", async () => {
    const r = receiver();
    await overIpc(r.receive, [
      { type: "l7-batch", events: { 0: FLOW } },
      { type: "l7-batch", events: Array(MAX_L7_BATCH + 1).fill(FLOW) },
      { type: "snapshot", snapshot: {} },
      "l7",
    ]);
    assert.deepEqual(r.got, []);
    assert.deepEqual(r.drops.view(), { "l7 batch": 2, message: 2 });
  });

  test("each reason is counted every time and logged once, with no byte the proxy sent", async () => {
    const r = receiver();
    const marker = "ZZ-attacker-bytes";
    const bad = { event: EVENT, src: { address: marker, port: 1 }, dst: DST };
    await overIpc(r.receive, [
      { type: "l7-batch", events: [bad, bad, { event: { ...EVENT, verdict: marker }, src: SRC, dst: DST }] },
      { type: "l7", ...bad },
      { type: "dns-answer", id: 1, ...ANSWER, ips: [marker] },
    ]);
    assert.deepEqual(r.drops.view(), { address: 3, "l7 event": 1, "dns answer": 1 });
    assert.equal(r.logged.length, 3, "one line per reason");
    assert.ok(!JSON.stringify(r.logged).includes(marker), "nothing the proxy sent is echoed");
  });
});
