import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileFilter, type FlowFilterSet } from "../../src/observe/filter.js";
import { filterFromFlags, type ObserveFlags } from "../../src/observe/flags.js";
import { NAMES, SAMPLES } from "./samples.js";

const matching = (set: FlowFilterSet): string[] => {
  const p = compileFilter(set);
  return NAMES.filter((n) => p(SAMPLES[n]!));
};

describe("compileFilter", () => {
  const cases: { name: string; set: FlowFilterSet; want: string[] }[] = [
    { name: "no filters pass everything", set: {}, want: NAMES },
    { name: "an empty filter in the allowlist passes everything", set: { allowlist: [{}] }, want: NAMES },
    {
      name: "values of a field are ORed",
      set: { allowlist: [{ verdict: ["AUDIT", "FORWARDED"] }] },
      want: ["dns", "http", "audit"],
    },
    {
      name: "fields of a filter are ANDed",
      set: { allowlist: [{ verdict: ["DROPPED"], traffic_direction: ["EGRESS"] }] },
      want: ["spoof"],
    },
    {
      name: "allowlist filters are ORed",
      set: { allowlist: [{ verdict: ["AUDIT"] }, { protocol: ["udp"] }] },
      want: ["dns", "audit"],
    },
    {
      name: "the denylist removes what it matches",
      set: { denylist: [{ verdict: ["DROPPED"] }] },
      want: ["dns", "http", "audit"],
    },
    {
      name: "denylist beats allowlist",
      set: { allowlist: [{ verdict: ["DROPPED"] }], denylist: [{ ip_version: ["IPv6"] }] },
      want: ["deny"],
    },
    {
      name: "source_ip takes a CIDR",
      set: { allowlist: [{ source_ip: ["10.0.0.0/24"] }] },
      want: ["deny", "dns", "http"],
    },
    {
      name: "destination_ip takes IPv6",
      set: { allowlist: [{ destination_ip: ["2001:db8::/32"] }] },
      want: ["spoof"],
    },
    {
      name: "source_pod namespace/prefix",
      set: { allowlist: [{ source_pod: ["default/tie"] }] },
      want: ["deny", "dns"],
    },
    {
      name: "destination_pod namespace/ is the whole namespace",
      set: { allowlist: [{ destination_pod: ["kube-system/"] }] },
      want: ["dns"],
    },
    {
      name: "a pod without namespace matches any namespace",
      set: { allowlist: [{ destination_pod: ["core"] }] },
      want: ["dns"],
    },
    {
      name: "source_label takes selector text",
      set: { allowlist: [{ source_label: ["org=empire,tier in (api)"] }] },
      want: ["spoof", "http"],
    },
    {
      name: "a label key with source prefix matches only that source",
      set: { allowlist: [{ destination_label: ["reserved:world"] }] },
      want: ["spoof"],
    },
    {
      name: "a negated label",
      set: { allowlist: [{ source_label: ["!tier"] }] },
      want: ["deny", "dns", "audit"],
    },
    { name: "identity", set: { allowlist: [{ source_identity: [258] }] }, want: ["audit"] },
    {
      name: "event type drop matches drop events, not the policy verdict beside them (as Hubble)",
      set: { allowlist: [{ event_type: [{ type: 1 }] }] },
      want: ["spoof"],
    },
    {
      name: "event type with sub type",
      set: { allowlist: [{ event_type: [{ type: 1, match_sub_type: true, sub_type: 132 }] }] },
      want: ["spoof"],
    },
    { name: "drop_reason_desc", set: { allowlist: [{ drop_reason_desc: ["POLICY_DENY"] }] }, want: ["deny"] },
    { name: "http status class 4+", set: { allowlist: [{ http_status_code: ["4+"] }] }, want: ["http"] },
    { name: "http status exact miss", set: { allowlist: [{ http_status_code: ["200"] }] }, want: [] },
    {
      name: "http method is case-insensitive",
      set: { allowlist: [{ http_method: ["get"] }] },
      want: ["http"],
    },
    {
      name: "http path is an RE2 regex on the path only",
      set: { allowlist: [{ http_path: ["^/v1/exhaust"] }] },
      want: ["http"],
    },
    { name: "http path does not see the query", set: { allowlist: [{ http_path: ["x=1"] }] }, want: [] },
    { name: "protocol icmp covers ICMPv6", set: { allowlist: [{ protocol: ["icmp"] }] }, want: ["spoof"] },
    { name: "protocol http", set: { allowlist: [{ protocol: ["HTTP"] }] }, want: ["http"] },
    {
      name: "destination port",
      set: { allowlist: [{ destination_port: ["80", "443"] }] },
      want: ["deny", "audit"],
    },
    { name: "source port", set: { allowlist: [{ source_port: ["80"] }] }, want: ["http"] },
    { name: "reply", set: { allowlist: [{ reply: [true] }] }, want: ["http"] },
    { name: "node name glob", set: { allowlist: [{ node_name: ["kind/*2"] }] }, want: ["spoof"] },
    { name: "ip version", set: { allowlist: [{ ip_version: ["IPv6"] }] }, want: ["spoof"] },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(matching(c.set), c.want));

  const errors: { name: string; set: FlowFilterSet; message: string }[] = [
    {
      name: "a bad IP names its path",
      set: { allowlist: [{}, { source_ip: ["10.0.0.1", "ten"] }] },
      message: 'Cannot use flow filter allowlist[1].source_ip[1]: "ten" is not an IP address or CIDR',
    },
    {
      name: "a bad port",
      set: { denylist: [{ destination_port: ["70000"] }] },
      message:
        'Cannot use flow filter denylist[0].destination_port[0]: "70000" is not a port number (0-65535)',
    },
    {
      name: "a bad protocol",
      set: { allowlist: [{ protocol: ["gopher"] }] },
      message: 'Cannot use flow filter allowlist[0].protocol[0]: unknown protocol "gopher"',
    },
    {
      name: "a bad status",
      set: { allowlist: [{ http_status_code: ["4xx"] }] },
      message: 'Cannot use flow filter allowlist[0].http_status_code[0]: "4xx" is not a status code or class',
    },
    {
      name: "a bad label term",
      set: { allowlist: [{ source_label: ["app=(x"] }] },
      message: 'Cannot parse label selector term "app=(x" in "app=(x"',
    },
  ];
  for (const c of errors)
    test(`error: ${c.name}`, () =>
      assert.throws(() => compileFilter(c.set), { code: "FLOW_FILTER_INVALID", message: c.message }));
});

describe("filterFromFlags", () => {
  const NOW = Date.parse("2024-11-23T12:10:00Z");
  const cases: { name: string; flags: ObserveFlags; want: string[] }[] = [
    { name: "no flags match everything", flags: {}, want: NAMES },
    { name: "--namespace matches either side", flags: { namespace: "kube-system" }, want: ["dns"] },
    {
      name: "--pod matches either side",
      flags: { pod: "default/deathstar" },
      want: ["deny", "spoof", "http", "audit"],
    },
    {
      name: "--pod without namespace is qualified by --namespace",
      flags: { pod: "coredns", namespace: "default" },
      want: [],
    },
    {
      name: "--from-pod only the source",
      flags: { fromPod: ["default/deathstar"] },
      want: ["spoof", "http"],
    },
    { name: "--to-pod only the destination", flags: { toPod: ["deathstar"] }, want: ["deny", "audit"] },
    {
      name: "--from-pod and --to-pod together",
      flags: { fromPod: "tiefighter", toPod: "deathstar" },
      want: ["deny"],
    },
    { name: "--label matches either side", flags: { label: ["k8s-app=kube-dns"] }, want: ["dns"] },
    { name: "--from-label", flags: { fromLabel: "org=alliance" }, want: ["audit"] },
    { name: "--to-label", flags: { toLabel: "tier=api" }, want: ["deny", "audit"] },
    { name: "--identity either side", flags: { identity: [300] }, want: ["dns"] },
    { name: "--from-identity", flags: { fromIdentity: "256" }, want: ["spoof", "http"] },
    { name: "--to-identity", flags: { toIdentity: "2" }, want: ["spoof"] },
    { name: "--verdict is case-insensitive", flags: { verdict: "dropped" }, want: ["deny", "spoof"] },
    {
      name: "--verdict repeated ORs",
      flags: { verdict: ["AUDIT", "FORWARDED"] },
      want: ["dns", "http", "audit"],
    },
    { name: "--type policy-verdict", flags: { type: "policy-verdict" }, want: ["deny", "dns", "audit"] },
    { name: "--type drop", flags: { type: "drop" }, want: ["spoof"] },
    { name: "--type l7", flags: { type: "l7" }, want: ["http"] },
    { name: "--type trace", flags: { type: "trace" }, want: [] },
    { name: "--protocol", flags: { protocol: "udp" }, want: ["dns"] },
    { name: "--port either side", flags: { port: 80 }, want: ["deny", "http"] },
    { name: "--to-port", flags: { toPort: "53" }, want: ["dns"] },
    { name: "--from-port", flags: { fromPort: "80" }, want: ["http"] },
    { name: "--ip either side", flags: { ip: "10.0.1.5" }, want: ["dns"] },
    { name: "--from-ip CIDR", flags: { fromIp: "192.168.0.0/16" }, want: ["audit"] },
    { name: "--to-ip", flags: { toIp: "10.0.0.12" }, want: ["deny", "audit"] },
    { name: "--http-status", flags: { httpStatus: "404" }, want: ["http"] },
    { name: "--http-method", flags: { httpMethod: "POST" }, want: [] },
    { name: "--http-path", flags: { httpPath: "exhaust-port$" }, want: ["http"] },
    { name: "--traffic-direction", flags: { trafficDirection: "egress" }, want: ["dns", "spoof"] },
    { name: "--node-name", flags: { nodeName: "kind/node1" }, want: ["deny", "dns", "http"] },
    {
      name: "either-side flags pair up per side, as hubble's: the pod's own port",
      flags: { pod: "deathstar", port: "80" },
      want: ["deny", "http"],
    },
    {
      name: "so --pod and --port of different sides match nothing",
      flags: { pod: "tiefighter", port: "80" },
      want: [],
    },
    {
      name: "comma-separated values are a list",
      flags: { verdict: "AUDIT,FORWARDED" },
      want: ["dns", "http", "audit"],
    },
  ];
  for (const c of cases)
    test(c.name, () => assert.deepEqual(matching(filterFromFlags(c.flags, NOW).filter), c.want));

  test("--pod compiles into a left (source) and right (destination) filter", () => {
    assert.deepEqual(filterFromFlags({ pod: "default/x", verdict: "DROPPED" }, NOW).filter, {
      allowlist: [
        { source_pod: ["default/x"], verdict: ["DROPPED"] },
        { destination_pod: ["default/x"], verdict: ["DROPPED"] },
      ],
    });
  });

  test("side-less flags give a single filter", () => {
    assert.deepEqual(filterFromFlags({ verdict: "DROPPED" }, NOW).filter, {
      allowlist: [{ verdict: ["DROPPED"] }],
    });
  });

  test("--last, --since (duration), --until (RFC 3339) and --follow", () => {
    assert.deepEqual(
      filterFromFlags({ last: "20", since: "5m", until: "2024-11-23T12:09:00Z", follow: true }, NOW),
      {
        filter: {},
        follow: true,
        number: 20,
        since: NOW - 300_000,
        until: Date.parse("2024-11-23T12:09:00Z"),
      },
    );
    assert.equal(filterFromFlags({ since: "1h30m" }, NOW).since, NOW - 5_400_000);
  });

  const errors: { name: string; flags: ObserveFlags; message: string }[] = [
    {
      name: "--verdict unknown",
      flags: { verdict: "MAYBE" },
      message: 'Cannot use --verdict: "MAYBE" is not a verdict',
    },
    {
      name: "--type unknown",
      flags: { type: "capture" },
      message: 'Cannot use --type: "capture" is not an event type',
    },
    {
      name: "--identity not a number",
      flags: { identity: "world" },
      message: 'Cannot use --identity: "world" is not a numeric identity',
    },
    { name: "--last zero", flags: { last: 0 }, message: 'Cannot use --last: "0" is not a positive count' },
    {
      name: "--since garbage",
      flags: { since: "yesterday" },
      message: 'Cannot use --since: "yesterday" is neither an RFC 3339 time nor a duration',
    },
    {
      name: "--since after --until",
      flags: { since: "1m", until: "2m" },
      message: "Cannot use --since: it is later than --until",
    },
    {
      name: "--traffic-direction unknown",
      flags: { trafficDirection: "up" },
      message: 'Cannot use --traffic-direction: "UP" is not ingress or egress',
    },
    {
      name: "--port out of range",
      flags: { port: "99999" },
      message: 'Cannot use filter source_port[0]: "99999" is not a port number (0-65535)',
    },
  ];
  for (const c of errors)
    test(`error: ${c.name}`, () =>
      assert.throws(() => filterFromFlags(c.flags, NOW), {
        code: "FLOW_FILTER_INVALID",
        message: c.message,
      }));
});
