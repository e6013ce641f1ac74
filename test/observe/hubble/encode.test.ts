/**
 * The agent's direct protobuf writer (encode.ts) against the reflective path (protojson object,
 * fromJson, toBinary): both decode to the same GetFlowsResponse for every sample flow, L7 flows
 * of each protocol, cluster-mode and trace-context flows; what it does not know it leaves to
 * the reflective path (undefined), never half-written.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { encodeRecord } from "../../../src/observe/hubble/encode.js";
import { hubbleRecord } from "../../../src/observe/hubble/json.js";
import { hubbleSchema } from "../../../src/observe/hubble/schema.js";
import type { Flow, FlowRecord } from "../../../src/observe/flow.js";
import { l7Flow } from "../../../src/observe/l7flow.js";
import type { L7Event } from "../../../src/proxy/types.js";
import { LOOKUP } from "../fixtures.js";
import { SAMPLES } from "../samples.js";

const s = hubbleSchema();
const reflective = (r: FlowRecord): Uint8Array =>
  toBinary(
    s.GetFlowsResponse,
    fromJson(s.GetFlowsResponse, hubbleRecord(r) as never, { registry: s.registry }),
  );
const decoded = (b: Uint8Array): unknown =>
  toJson(s.GetFlowsResponse, fromBinary(s.GetFlowsResponse, b), { registry: s.registry });

const base = { srcIdentity: 256, dstIdentity: 257, endpoint: "e1", direction: "ingress" } as const;
const L7: L7Event[] = [
  {
    ...base,
    type: "http",
    verdict: "forwarded",
    method: "GET",
    url: "http://a/b",
    status: 200,
    latencyMs: 1.25,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  },
  {
    ...base,
    type: "http",
    verdict: "denied",
    method: "PUT",
    url: "http://a/x",
    status: 403,
    reason: "no rule",
    httpVersion: "HTTP/2",
  },
  {
    ...base,
    type: "dns",
    verdict: "forwarded",
    query: "example.com.",
    qtype: "A",
    rcode: "NOERROR",
    answers: ["1.2.3.4"],
    transport: "UDP",
  },
  { ...base, type: "kafka", verdict: "denied", apiKey: 0, topics: ["orders"], correlationId: -7 },
  { ...base, type: "tls", verdict: "forwarded", sni: "api.example.com" },
];
const addrs = { src: { address: "10.0.0.13", port: 43210 }, dst: { address: "10.0.0.12", port: 80 } };

function flows(): Flow[] {
  const out: Flow[] = Object.values(SAMPLES).map((f) => ({ ...f }));
  for (const e of L7) out.push(l7Flow(e, addrs, LOOKUP, "n1"));
  const deny = SAMPLES["deny"] as Flow;
  out.push({
    ...deny,
    time: "2026-01-02T03:04:05.123456789Z",
    source: { ...(deny.source as Flow["source"] & object), node_name: "n1" },
    destination: { ...(deny.destination as Flow["destination"] & object), node_name: "n2" },
    is_reply: false,
    ingress_denied_by: [{ name: "p", namespace: "default", kind: "CiliumNetworkPolicy", revision: 2 ** 40 }],
  });
  out.push({ ...deny, time: "2026-01-02T03:04:05Z", verdict: "VERDICT_UNKNOWN", Summary: "é ü 日本" });
  return out;
}

describe("encodeRecord", () => {
  test("decodes to the same GetFlowsResponse as the reflective path, flow by flow", () => {
    const all = flows();
    assert.ok(all.length >= 12, `${all.length} flows`);
    for (const [i, f] of all.entries()) {
      for (const r of [
        { flow: f, node_name: "n1", time: f.time },
        { flow: f, time: f.time },
      ] as FlowRecord[]) {
        const fast = encodeRecord(r);
        assert.ok(fast !== undefined, `flow ${i} (${f.Summary}) is written directly`);
        assert.deepEqual(decoded(fast), decoded(reflective(r)), `flow ${i} (${f.Summary})`);
      }
    }
  });

  test("what it does not know is left to the reflective path: an unknown field, a bad time, lost events", () => {
    const f = SAMPLES["deny"] as Flow;
    const unknown = { flow: { ...f, extensions: { x: 1 } } as unknown as Flow, time: f.time };
    assert.equal(encodeRecord(unknown), undefined);
    assert.equal(
      encodeRecord({ flow: { ...f, IP: { ...f.IP, hops: 3 } } as unknown as Flow, time: f.time }),
      undefined,
    );
    assert.equal(encodeRecord({ flow: { ...f, time: "yesterday" }, time: f.time }), undefined);
    assert.equal(encodeRecord({ flow: { ...f, verdict: "SIDEWAYS" as "DROPPED" }, time: f.time }), undefined);
    assert.equal(
      encodeRecord({ lost_events: { source: "HUBBLE_RING_BUFFER", num_events_lost: 2 }, time: f.time }),
      undefined,
    );
    // And after a refusal the next record is whole (no state left behind).
    const ok = { flow: f, node_name: "n1", time: f.time };
    assert.deepEqual(decoded(encodeRecord(ok) as Uint8Array), decoded(reflective(ok)));
  });
});
