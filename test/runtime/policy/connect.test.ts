import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isMembraneError, type ErrorCode } from "../../../src/errors.js";
import { compileConnect } from "../../../src/runtime/enforce/connect-prog.js";
import { connectProbes, connectRules } from "../../../src/runtime/enforce/connect-rules.js";
import { parseCidr } from "../../../src/runtime/policy/cidr.js";
import { parseTracingPolicies } from "../../../src/runtime/policy/parse.js";

const doc = (o: {
  pod?: boolean;
  call?: string;
  arg?: string;
  sel: string;
}): string => `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: c}
spec:
${o.pod === false ? "" : "  podSelector: {matchLabels: {app: client}}\n"}  kprobes:
  - call: ${o.call ?? "tcp_connect"}
    args: [${o.arg ?? "{index: 0, type: sock}"}]
    selectors:
    - ${o.sel}
`;

const refused: { name: string; yaml: string; code: ErrorCode; path: string; message: RegExp }[] = [
  {
    name: "DAddr on a node-wide tcp_connect needs a podSelector",
    yaml: doc({ pod: false, sel: "matchArgs: [{index: 0, operator: DAddr, values: [10.0.0.0/8]}]" }),
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].selectors[0].matchArgs[0].operator",
    message: /podSelector/,
  },
  {
    name: "security_socket_connect has no node-wide path",
    yaml: doc({
      pod: false,
      call: "security_socket_connect",
      arg: "{index: 1, type: sockaddr}",
      sel: "matchArgs: [{index: 1, operator: SPort, values: [80]}]",
    }),
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].call",
    message: /cgroup connect4\/connect6/,
  },
  {
    name: "matchBinaries cannot be served by a cgroup connect program",
    yaml: doc({
      sel: "matchArgs: [{index: 0, operator: DPort, values: [80]}]\n      matchBinaries: [{operator: In, values: [/usr/bin/curl]}]",
    }),
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].selectors[0].matchBinaries",
    message: /not the process/,
  },
  {
    name: "Override with another errno than EPERM",
    yaml: doc({
      sel: "matchArgs: [{index: 0, operator: DPort, values: [80]}]\n      matchActions: [{action: Override, argError: -13}]",
    }),
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].selectors[0].matchActions[0].argError",
    message: /EPERM/,
  },
  {
    name: "Override on a hook that is not a connect",
    yaml: doc({
      call: "sys_openat\n    syscall: true",
      arg: "{index: 1, type: string}",
      sel: "matchArgs: [{index: 1, operator: Equal, values: [/etc/shadow]}]\n      matchActions: [{action: Override, argError: -1}]",
    }),
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].selectors[0].matchActions[0].action",
    message: /connect hooks/,
  },
  {
    name: "a DAddr value that is not a CIDR",
    yaml: doc({ sel: "matchArgs: [{index: 0, operator: DAddr, values: [10.0.0.0/33]}]" }),
    code: "TRACING_POLICY_INVALID",
    path: "spec.kprobes[0].selectors[0].matchArgs[0].values[0]",
    message: /not an IPv4 or IPv6/,
  },
  {
    name: "SPort of a socket at connect()",
    yaml: doc({ sel: "matchArgs: [{index: 0, operator: SPort, values: [80]}]" }),
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].selectors[0].matchArgs[0].operator",
    message: /source port/,
  },
];

describe("connect hooks: where they are served, what is refused", () => {
  for (const c of refused)
    test(c.name, () => {
      assert.throws(
        () => parseTracingPolicies(c.yaml, "c.yaml"),
        (e) =>
          isMembraneError(e) &&
          e.code === c.code &&
          e.issues[0]?.path === c.path &&
          c.message.test(e.issues[0]?.message ?? ""),
      );
    });

  test("an endpoint policy on tcp_connect becomes connect rules (first match decides)", () => {
    const [p] = parseTracingPolicies(
      doc({
        sel: `matchArgs:
      - {index: 0, operator: NotDAddr, values: [10.0.0.0/8, "fd00::/8"]}
      - {index: 0, operator: DPort, values: [443, 80]}
      matchActions: [{action: Sigkill}]`,
      }),
      "c.yaml",
    );
    assert.ok(p);
    const probes = connectProbes(p);
    assert.equal(probes.length, 1);
    const { rules } = connectRules(probes);
    assert.deepEqual(rules, [
      {
        tcpOnly: true,
        matches: [
          { kind: "daddr", not: true, cidrs: [parseCidr("10.0.0.0/8"), parseCidr("fd00::/8")] },
          { kind: "dport", not: false, ports: [443, 80] },
        ],
        post: true,
        deny: true,
        kill: true,
      },
    ]);
    for (const fam of [4, 6] as const) assert.equal(compileConnect(rules, fam).length % 8, 0);
  });

  test("CIDRs: IPv4 and IPv6, host bits kept, bad ones refused", () => {
    assert.deepEqual(parseCidr("192.168.1.7/24"), { family: 4, words: [0xc0a80107], prefix: 24 });
    assert.deepEqual(parseCidr("::1"), { family: 6, words: [0, 0, 0, 1], prefix: 128 });
    assert.deepEqual(parseCidr("fd00::/8"), { family: 6, words: [0xfd000000, 0, 0, 0], prefix: 8 });
    for (const bad of ["1.2.3.256", "1.2.3.4/33", "1:2:3", "::1/129", "a::b::c", "10.0.0.0/", ""])
      assert.equal(parseCidr(bad), undefined, bad);
  });
});
