/**
 * OpenTelemetry trace ids in L7 flows: the W3C `traceparent` header of a request, validated,
 * goes into the flow's `trace_context.parent.trace_id` (as Hubble fills it); an invalid or
 * repeated one is ignored. Checked on the parser, on real HTTP/1.1 and HTTP/2 exchanges
 * through the proxies, across the proxy process boundary and in the flow.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { traceIdOf, traceIdOfFields } from "../../src/proxy/http/trace-context.js";
import { l7EventFrom } from "../../src/proxy/runtime/validate.js";
import { l7Flow } from "../../src/observe/l7flow.js";
import { LOOKUP } from "../observe/fixtures.js";
import { countResponses, rawExchange, startHarness } from "./http-harness.js";
import { h2request, startH2Harness } from "./http2-harness.js";

const ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const VALID = `00-${ID}-00f067aa0ba902b7-01`;

const CASES: { name: string; value: string | undefined; id: string | undefined }[] = [
  { name: "version 00, sampled", value: VALID, id: ID },
  { name: "version 00, not sampled", value: `00-${ID}-00f067aa0ba902b7-00`, id: ID },
  { name: "surrounding spaces and tabs (OWS)", value: ` \t${VALID} `, id: ID },
  {
    name: "a later version with more fields after a dash",
    value: `cc-${ID}-00f067aa0ba902b7-01-what-ever`,
    id: ID,
  },
  { name: "version ff is invalid", value: `ff-${ID}-00f067aa0ba902b7-01`, id: undefined },
  { name: "version 00 with more after the flags", value: `${VALID}-extra`, id: undefined },
  { name: "a later version with more but no dash", value: `cc-${ID}-00f067aa0ba902b7-01x`, id: undefined },
  { name: "an all-zero trace id", value: `00-${"0".repeat(32)}-00f067aa0ba902b7-01`, id: undefined },
  { name: "an all-zero parent id", value: `00-${ID}-${"0".repeat(16)}-01`, id: undefined },
  { name: "upper-case hex", value: VALID.toUpperCase(), id: undefined },
  { name: "a trace id one digit short", value: `00-${ID.slice(1)}-00f067aa0ba902b7-01`, id: undefined },
  { name: "not hex", value: `00-${ID.slice(0, 31)}g-00f067aa0ba902b7-01`, id: undefined },
  { name: "empty", value: "", id: undefined },
  { name: "absent", value: undefined, id: undefined },
  { name: "huge", value: `cc-${ID}-00f067aa0ba902b7-01-${"a".repeat(10_000)}`, id: undefined },
];

describe("traceparent", () => {
  for (const c of CASES)
    test(`${c.name}: ${c.id === undefined ? "ignored" : "its trace id"}`, () =>
      assert.equal(traceIdOf(c.value), c.id));

  test("two traceparent fields: ignored (the specification's rule)", () => {
    const f = (value: string): { lower: string; value: string } => ({ lower: "traceparent", value });
    assert.equal(traceIdOfFields([f(VALID)]), ID);
    assert.equal(traceIdOfFields([f(VALID), f(VALID)]), undefined);
    assert.equal(traceIdOfFields([{ lower: "tracestate", value: "x=1" }]), undefined);
  });

  test("HTTP/1.1 through the proxy: the allowed and the denied request carry the trace id; an invalid one none", async () => {
    const h = await startHarness({});
    try {
      const req = (path: string, tp: string): string =>
        `GET ${path} HTTP/1.1\r\nHost: svc.local\r\nTraceParent: ${tp}\r\n\r\n`;
      await rawExchange(
        h.port,
        req("/public/a", VALID) + req("/admin", VALID) + req("/public/b", "00-nope"),
        {
          until: countResponses(3),
        },
      );
      assert.deepEqual(
        h.events.map((e) => [e.verdict, e.traceId]),
        [
          ["forwarded", ID],
          ["denied", ID],
          ["forwarded", undefined],
        ],
      );
    } finally {
      await h.close();
    }
  });

  test("HTTP/2 through the proxy: the trace id of the request", async () => {
    const h = await startH2Harness();
    try {
      const base = { ":method": "GET", ":authority": "svc.local", ":scheme": "http" };
      await h2request(h.client(), { ...base, ":path": "/public/x", traceparent: VALID });
      await h2request(h.client(), { ...base, ":path": "/admin", traceparent: VALID });
      await h2request(h.client(), {
        ...base,
        ":path": "/public/y",
        traceparent: `ff-${ID}-00f067aa0ba902b7-01`,
      });
      assert.deepEqual(
        h.events.map((e) => [e.verdict, e.traceId]),
        [
          ["forwarded", ID],
          ["denied", ID],
          ["forwarded", undefined],
        ],
      );
    } finally {
      await h.close();
    }
  });

  test("across the proxy process boundary only a well-formed id passes; the flow has Hubble's trace_context", () => {
    const ev = {
      type: "http",
      verdict: "forwarded",
      srcIdentity: 1,
      dstIdentity: 2,
      endpoint: "e",
      direction: "ingress",
    };
    assert.equal(l7EventFrom({ ...ev, traceId: ID })?.traceId, ID);
    assert.equal(l7EventFrom({ ...ev, traceId: "<script>" })?.traceId, undefined);
    const e = l7EventFrom({ ...ev, traceId: ID, method: "GET", url: "http://svc/", status: 200 });
    assert.ok(e);
    const addr = { src: { address: "10.0.0.1", port: 1234 }, dst: { address: "10.0.0.2", port: 80 } };
    assert.deepEqual(l7Flow(e, addr, LOOKUP, "n1").trace_context, { parent: { trace_id: ID } });
    assert.equal(l7Flow({ ...e, traceId: undefined } as never, addr, LOOKUP).trace_context, undefined);
  });
});
