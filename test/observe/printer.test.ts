import assert from "node:assert/strict";
import { hubbleRecord } from "../../src/observe/hubble/json.js";
import { describe, test } from "node:test";
import type { FlowRecord } from "../../src/observe/flow.js";
import { formatCompact, formatJson, formatTable, parseOutputFormat } from "../../src/observe/printer.js";
import { SAMPLES } from "./samples.js";

const rec = (name: string): FlowRecord => ({ flow: SAMPLES[name]!, time: SAMPLES[name]!.time });
const lost: FlowRecord = {
  lost_events: { source: "HUBBLE_RING_BUFFER", num_events_lost: 6 },
  time: "2024-11-23T12:00:06.000Z",
};

describe("printer", () => {
  const compact: [string, FlowRecord, string][] = [
    [
      "a policy deny names pods, identities, match type, flags and the rule",
      rec("deny"),
      "Nov 23 12:00:01.123: default/tiefighter-7d9:43210 (ID:257) -> default/deathstar-6f8:80 (ID:256) policy-verdict:L3-L4 INGRESS DENIED (TCP Flags: SYN) by default/rule1 spec.ingress[0]",
    ],
    [
      "an allowed verdict says ALLOWED",
      rec("dns"),
      "Nov 23 12:00:02.000: default/tiefighter-7d9:5353 (ID:257) -> kube-system/coredns-abc:53 (ID:300) policy-verdict:L3-L4 EGRESS ALLOWED (UDP)",
    ],
    [
      "a drop event shows the reason in Hubble's words and reserved identities by name",
      rec("spoof"),
      "Nov 23 12:00:03.000: default/deathstar-6f8 (ID:256) -> 2001:db8::1 (world) Invalid source ip DROPPED (ICMPv6 EchoRequest)",
    ],
    [
      "a reply points backwards",
      rec("http"),
      "Nov 23 12:00:04.000: default/deathstar-6f8:80 (ID:256) <- default/tiefighter-7d9:43210 (ID:257) http-response FORWARDED (HTTP/1.1 404 GET http://deathstar/v1/exhaust-port?x=1)",
    ],
    [
      "an audited default deny says AUDITED by default deny",
      rec("audit"),
      "Nov 23 12:00:05.000: 192.168.7.7:50000 (ID:258) -> default/deathstar-6f8:443 (ID:256) policy-verdict:none INGRESS AUDITED (TCP Flags: SYN) by default deny",
    ],
    ["lost events", lost, "EVENTS LOST: HUBBLE_RING_BUFFER 6"],
  ];
  for (const [name, r, want] of compact)
    test(`compact: ${name}`, () => assert.equal(formatCompact(r, { utc: true }), want));

  test("compact: IPv6 with a port is bracketed", () => {
    const f = {
      ...SAMPLES.dns!,
      source: { identity: 2 },
      IP: { source: "fd00::1", destination: "fd00::2", ipVersion: "IPv6" as const },
    };
    assert.match(formatCompact({ flow: f, time: f.time }, { utc: true }), /: \[fd00::1\]:5353 \(world\) -> /);
  });

  test("json is one record per line, as Hubble's protojson", () => {
    const line = formatJson(rec("deny"));
    assert.ok(!line.includes("\n"));
    assert.deepEqual(JSON.parse(line), hubbleRecord(rec("deny")));
  });

  test("table pads columns under a header", () => {
    assert.equal(
      formatTable([rec("dns"), lost], { utc: true }),
      [
        "TIMESTAMP             SOURCE                                 DESTINATION                           TYPE                          VERDICT              SUMMARY",
        "Nov 23 12:00:02.000   default/tiefighter-7d9:5353 (ID:257)   kube-system/coredns-abc:53 (ID:300)   policy-verdict:L3-L4 EGRESS   ALLOWED              UDP",
        "Nov 23 12:00:06.000                                                                                EVENTS LOST                   HUBBLE_RING_BUFFER   6",
      ].join("\n"),
    );
  });

  test("output format names are checked", () => {
    assert.equal(parseOutputFormat("table"), "table");
    assert.throws(() => parseOutputFormat("yaml"), {
      code: "FLOW_FILTER_INVALID",
      message: 'Cannot use output format "yaml": it is not compact, json or table',
    });
  });
});

describe("printer: bytes from the network never reach the terminal raw", () => {
  const hostile: FlowRecord = {
    flow: { ...SAMPLES.http!, Summary: "Kafka produce topic evil\u001b]0;owned\u0007\u001b[2J\u009b" },
    time: SAMPLES.http!.time,
  };
  test("compact: control characters are shown escaped", () => {
    const line = formatCompact(hostile);
    assert.ok(line.includes("(Kafka produce topic evil\\x1b]0;owned\\x07\\x1b[2J\\x9b)"), line);
    assert.doesNotMatch(line, /[\u0000-\u001f\u007f-\u009f]/);
  });
  test("table: every cell escaped alike", () => {
    const t = formatTable([hostile]);
    assert.ok(t.includes("evil\\x1b]0;owned\\x07"), t);
    assert.doesNotMatch(t.replace(/\n/g, ""), /[\u0000-\u001f\u007f-\u009f]/);
  });
  test("json: escaped by JSON itself, the value unchanged", () => {
    const back = JSON.parse(formatJson(hostile)) as FlowRecord;
    assert.ok("flow" in back && back.flow.Summary === hostile.flow.Summary);
  });
});
