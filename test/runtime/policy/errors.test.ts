import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isMembraneError, type ErrorCode } from "../../../src/errors.js";
import { parseTracingPolicies } from "../../../src/runtime/policy/parse.js";

const head = (kind = "TracingPolicy", meta = "{name: p}"): string =>
  `apiVersion: cilium.io/v1alpha1\nkind: ${kind}\nmetadata: ${meta}\nspec:\n`;
const POD = "  podSelector: {matchLabels: {app: x}}\n";
const openat = (selectors: string, extra = ""): string =>
  `${head()}${POD}  kprobes:\n  - call: sys_openat\n    syscall: true\n    args: [{index: 1, type: string}]\n${extra}    selectors:\n${selectors}`;
const kill = (matchArgs: string): string =>
  openat(`    - matchArgs: [${matchArgs}]\n      matchActions: [{action: Sigkill}]\n`);

interface Case {
  name: string;
  yaml: string;
  code: ErrorCode;
  path: string;
  message: RegExp;
}

const HOSTILE = [
  ["a double quote (would close the string literal)", '/etc/x\\"); system(\\"id'],
  ["a backslash", "/etc/x\\\\"],
  ["a newline (would start a new probe)", "/etc/x\\n} tracepoint:x { "],
  ["a percent sign (a format directive)", "/etc/%s"],
  ["a space", "/etc/a b"],
  ["a NUL byte", "/etc/x\\0y"],
  ["a non-ASCII letter", "/etc/é"],
] as const;

const cases: Case[] = [
  ...HOSTILE.map(([what, v]): Case => ({
    name: `a matchArgs value with ${what} is refused`,
    yaml: kill(`{index: 1, operator: Equal, values: ["${v}"]}`),
    code: "TRACING_POLICY_INVALID",
    path: "spec.kprobes[0].selectors[0].matchArgs[0].values[0]",
    message: /values may hold only letters, digits/,
  })),
  {
    name: "a matchBinaries value with a quote is refused",
    yaml: openat(
      `    - matchBinaries: [{operator: In, values: ['/bin/"x']}]\n      matchActions: [{action: Post}]\n`,
    ),
    code: "TRACING_POLICY_INVALID",
    path: "spec.kprobes[0].selectors[0].matchBinaries[0].values[0]",
    message: /contains "\\""/,
  },
  {
    name: "a value longer than the compared length is refused",
    yaml: kill(`{index: 1, operator: Prefix, values: ["/${"a".repeat(90)}"]}`),
    code: "TRACING_POLICY_INVALID",
    path: "spec.kprobes[0].selectors[0].matchArgs[0].values[0]",
    message: /at most 78 are compared/,
  },
  {
    name: "Sigkill without podSelector is refused (it could hit the agent or PID 1)",
    yaml: `${head()}  kprobes:\n  - call: sys_openat\n    syscall: true\n    args: [{index: 1, type: string}]\n    selectors:\n    - matchArgs: [{index: 1, operator: Equal, values: [/etc/shadow]}]\n      matchActions: [{action: Sigkill}]\n`,
    code: "TRACING_POLICY_UNSAFE",
    path: "spec.kprobes[0].selectors[0].matchActions",
    message: /without spec.podSelector can hit any process of the node/,
  },
  {
    name: "Sigkill with nothing narrowing the selector is refused",
    yaml: openat("    - matchActions: [{action: Sigkill}]\n"),
    code: "TRACING_POLICY_UNSAFE",
    path: "spec.kprobes[0].selectors[0].matchActions",
    message: /kills every call of __x64_sys_openat/,
  },
  {
    name: "Signal narrowed only by a NotIn binary list is refused",
    yaml: openat(
      "    - matchBinaries: [{operator: NotIn, values: [/bin/true]}]\n      matchActions: [{action: Signal, argSig: 15}]\n",
    ),
    code: "TRACING_POLICY_UNSAFE",
    path: "spec.kprobes[0].selectors[0].matchActions",
    message: /narrow the selector/,
  },
  {
    name: "Postfix on the binary (read at exec, no pointer to its end) is refused with the reason",
    yaml: openat(
      "    - matchArgs: [{index: 1, operator: Equal, values: [/etc/shadow]}]\n      matchBinaries: [{operator: Postfix, values: [/cat]}]\n      matchActions: [{action: Sigkill}]\n",
    ),
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].selectors[0].matchBinaries[0].operator",
    message: /served only on string arguments of syscalls/,
  },
  {
    name: "Postfix on a tracepoint's __data_loc string is refused with the reason",
    yaml: `${head()}${POD}  tracepoints:\n  - subsystem: sched\n    event: sched_process_exec\n    args: [{index: 4, type: string}]\n    selectors:\n    - matchArgs: [{index: 4, operator: Postfix, values: [/cat]}]\n`,
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.tracepoints[0].selectors[0].matchArgs[0].operator",
    message: /served only on string arguments of syscalls/,
  },
  {
    name: "Postfix in a probe served by fanotify (Override) is refused with the reason",
    yaml: `${head()}${POD}  kprobes:\n  - call: security_file_open\n    args: [{index: 0, type: file}]\n    selectors:\n    - matchArgs: [{index: 0, operator: Postfix, values: [/shadow]}]\n      matchActions: [{action: Override, argError: -1}]\n`,
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].selectors[0].matchArgs",
    message: /fanotify responder that serves Override/,
  },
  {
    name: "Override on a syscall is refused (no bpf_override_return on this kernel; file hooks use fanotify)",
    yaml: openat(
      "    - matchArgs: [{index: 1, operator: Equal, values: [/x]}]\n      matchActions: [{action: Override, argError: -1}]\n",
    ),
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].selectors[0].matchActions[0].action",
    message: /Override on __x64_sys_openat needs bpf_override_return.*served for the file hooks/,
  },
  {
    name: "lsmhooks are refused",
    yaml: `${head()}  lsmhooks:\n  - hook: file_open\n`,
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.lsmhooks",
    message: /BPF LSM programs/,
  },
  {
    name: "an unmapped kernel function is refused, naming the translated ones",
    yaml: `${head()}  kprobes:\n  - call: commit_creds\n`,
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].call",
    message: /no tracepoint translation \(translated: cap_capable, fd_install/,
  },
  {
    name: "a syscall named without syscall: true gets the fix",
    yaml: `${head()}  kprobes:\n  - call: sys_openat\n`,
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].call",
    message: /add syscall: true/,
  },
  {
    name: "a matchArgs on an argument the hook cannot read is refused",
    yaml: `${head()}${POD}  kprobes:\n  - call: security_file_permission\n    args: [{index: 0, type: file}, {index: 1, type: int}]\n    selectors:\n    - matchArgs: [{index: 1, operator: Equal, values: [4]}]\n`,
    code: "TRACING_POLICY_UNSUPPORTED",
    path: "spec.kprobes[0].selectors[0].matchArgs[0].index",
    message: /argument 1 of security_file_permission cannot be read/,
  },
  {
    name: "an unknown field gets a did-you-mean",
    yaml: `${head()}  kprobe:\n  - call: sys_openat\n`,
    code: "TRACING_POLICY_INVALID",
    path: "spec.kprobe",
    message: /unknown field "kprobe"; did you mean "kprobes"\?/,
  },
  {
    name: "a wrong apiVersion is named",
    yaml:
      head().replace("cilium.io/v1alpha1", "cilium.io/v2") +
      "  kprobes: [{call: sys_openat, syscall: true}]\n",
    code: "TRACING_POLICY_INVALID",
    path: "apiVersion",
    message: /must be cilium.io\/v1alpha1/,
  },
  {
    name: "Signal needs a signal number in range",
    yaml: kill("{index: 1, operator: Equal, values: [/x]}").replace(
      "{action: Sigkill}",
      "{action: Signal, argSig: 99}",
    ),
    code: "TRACING_POLICY_INVALID",
    path: "spec.kprobes[0].selectors[0].matchActions[0].argSig",
    message: /between 1 and 31/,
  },
  {
    name: "an integer value that is not a number is named",
    yaml: `${head()}${POD}  kprobes:\n  - call: sys_setuid\n    syscall: true\n    args: [{index: 0, type: int}]\n    selectors:\n    - matchArgs: [{index: 0, operator: Equal, values: ["0; rm"]}]\n`,
    code: "TRACING_POLICY_INVALID",
    path: "spec.kprobes[0].selectors[0].matchArgs[0].values[0]",
    message: /is not an integer/,
  },
  {
    name: "an unknown capability is named",
    yaml: openat(
      "    - matchCapabilities: [{type: Effective, operator: In, values: [CAP_EVERYTHING]}]\n      matchActions: [{action: Post}]\n",
    ),
    code: "TRACING_POLICY_INVALID",
    path: "spec.kprobes[0].selectors[0].matchCapabilities[0].values[0]",
    message: /unknown capability "CAP_EVERYTHING"/,
  },
];

describe("TracingPolicy validation: field-level errors", () => {
  for (const c of cases)
    test(c.name, () => {
      assert.throws(
        () => parseTracingPolicies(c.yaml, "p.yaml"),
        (e) => {
          assert.ok(isMembraneError(e));
          assert.equal(e.code, c.code, e.describe());
          assert.equal(e.issues[0]?.path, c.path, e.describe());
          assert.match(e.issues[0]?.message ?? "", c.message);
          return true;
        },
      );
    });

  test("every problem of a document is reported at once, with file and line", () => {
    const yaml = kill(
      `{index: 1, operator: Equal, values: ["a b"]}, {index: 7, operator: Equal, values: [x]}`,
    );
    assert.throws(
      () => parseTracingPolicies(yaml, "p.yaml"),
      (e) =>
        isMembraneError(e) &&
        e.issues.length === 2 &&
        e.issues.every((i) => i.file === "p.yaml" && (i.line ?? 0) > 0),
    );
  });

  test("the annotation membrane.io/allow-unsafe-kill accepts a kill without podSelector", () => {
    const yaml = `${head("TracingPolicy", '{name: p, annotations: {"membrane.io/allow-unsafe-kill": "true"}}')}  kprobes:\n  - call: sys_openat\n    syscall: true\n    selectors:\n    - matchActions: [{action: Sigkill}]\n`;
    const [p] = parseTracingPolicies(yaml, "p.yaml");
    assert.equal(p?.allowUnsafeKill, true);
  });

  test("a TracingPolicyNamespaced sees only its namespace's endpoints, whatever its podSelector says", () => {
    const yaml = `${head("TracingPolicyNamespaced", "{name: p, namespace: prod}")}  podSelector: {matchLabels: {"k8s:io.kubernetes.pod.namespace": dev, app: x}}\n  kprobes: [{call: sys_openat, syscall: true}]\n`;
    const [p] = parseTracingPolicies(yaml, "p.yaml");
    assert.equal(p?.namespace, "prod");
    assert.match(p?.podSelector?.toString() ?? "", /io.kubernetes.pod.namespace.*prod/);
    assert.doesNotMatch(p?.podSelector?.toString() ?? "", /dev/);
  });

  test("a kill narrowed by matchArgs in a selected endpoint is accepted, and syscall kprobes report __x64_sys_*", () => {
    const [p] = parseTracingPolicies(kill("{index: 1, operator: Equal, values: [/etc/shadow]}"), "p.yaml");
    assert.equal(p?.probes[0]?.functionName, "__x64_sys_openat");
    assert.equal(p?.probes[0]?.attach[0]?.tracepoint, "syscalls:sys_enter_openat");
    assert.deepEqual(p?.probes[0]?.selectors[0]?.actions, [{ action: "Sigkill" }]);
  });
});
