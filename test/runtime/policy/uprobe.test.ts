/**
 * `spec.uprobes` (pure): what is read, what is refused and where, the bpftrace
 * program it becomes, and the process_uprobe line it is exported as (parsed
 * with Tetragon's own descriptors).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { policyEventToRuntime } from "../../../src/agent/controllers/runtime-bridge.js";
import { isMembraneError, type ErrorCode } from "../../../src/errors.js";
import { compileScript } from "../../../src/runtime/enforce/script.js";
import { parseLine, toEvent } from "../../../src/runtime/enforce/output.js";
import { parseTracingPolicies } from "../../../src/runtime/policy/parse.js";
import type { TracingPolicy } from "../../../src/runtime/policy/types.js";
import { parseStrict } from "../tetragon-schema.js";

const doc = (uprobe: string, head = "  podSelector: {matchLabels: {app: victim}}\n"): string =>
  `apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: up}\nspec:\n${head}  uprobes:\n${uprobe}`;

const KILL = doc(`  - path: /opt/app/bin/server
    symbols: [check_password, audit_login]
    message: login function called
    tags: [auth]
    args: [{index: 0, type: string, label: user}, {index: 2, type: int64}]
    selectors:
    - matchArgs: [{index: 0, operator: Equal, values: [root]}]
      matchActions: [{action: Sigkill}]
    - matchActions: [{action: Post}]
`);

function one(yaml: string): TracingPolicy {
  const [p] = parseTracingPolicies(yaml, "up.yaml");
  assert.ok(p);
  return p;
}

function refused(yaml: string, code: ErrorCode, path: string, message?: RegExp): void {
  assert.throws(
    () => parseTracingPolicies(yaml, "up.yaml"),
    (e) => {
      assert.ok(isMembraneError(e), String(e));
      assert.deepEqual([e.code, e.issues[0]?.path], [code, path], e.message + JSON.stringify(e.issues));
      if (message) assert.match(e.issues[0]?.message ?? "", message);
      return true;
    },
  );
}

const guards = { agentPid: 4242, hostNamespaces: {} };

describe("TracingPolicy uprobes (pure)", () => {
  test("one probe per symbol, each a uprobe on that file with the args read from registers", () => {
    const p = one(KILL);
    assert.deepEqual(
      p.probes.map((x) => [x.hook, x.functionName, x.attach[0]?.uprobe, x.path]),
      [
        [
          "uprobe",
          "check_password",
          { path: "/opt/app/bin/server", symbol: "check_password" },
          "spec.uprobes[0]",
        ],
        ["uprobe", "audit_login", { path: "/opt/app/bin/server", symbol: "audit_login" }, "spec.uprobes[0]"],
      ],
    );
    const probe = p.probes[0];
    assert.equal(probe?.attach[0]?.args.get(0)?.kind, "ustr");
    assert.equal(probe?.attach[0]?.args.get(2)?.kind, "int");
    assert.equal(probe?.selectors.length, 2);
    assert.equal(probe?.message, "login function called");
  });

  const cases: [string, string, ErrorCode, string, RegExp?][] = [
    [
      "a relative path",
      "  - {path: bin/bash, symbols: [readline]}\n",
      "TRACING_POLICY_INVALID",
      "spec.uprobes[0].path",
    ],
    [
      "a path with a space (would split bpftrace's probe name)",
      '  - {path: "/bin/ba sh", symbols: [readline]}\n',
      "TRACING_POLICY_INVALID",
      "spec.uprobes[0].path",
    ],
    [
      "a path with ':' (bpftrace's separator)",
      '  - {path: "/bin/bash:main", symbols: [readline]}\n',
      "TRACING_POLICY_INVALID",
      "spec.uprobes[0].path",
    ],
    [
      "a path with ..",
      "  - {path: /usr/../bin/bash, symbols: [readline]}\n",
      "TRACING_POLICY_INVALID",
      "spec.uprobes[0].path",
    ],
    [
      "a wildcard symbol",
      '  - {path: /bin/bash, symbols: ["read*"]}\n',
      "TRACING_POLICY_INVALID",
      "spec.uprobes[0].symbols[0]",
    ],
    [
      "a symbol with program text",
      '  - {path: /bin/bash, symbols: ["main { system(\\"id\\") }"]}\n',
      "TRACING_POLICY_INVALID",
      "spec.uprobes[0].symbols[0]",
    ],
    [
      "no symbols",
      "  - {path: /bin/bash, symbols: []}\n",
      "TRACING_POLICY_INVALID",
      "spec.uprobes[0].symbols",
    ],
    ["symbols missing", "  - {path: /bin/bash}\n", "TRACING_POLICY_INVALID", "spec.uprobes[0].symbols"],
    [
      "a symbol listed twice",
      "  - {path: /bin/bash, symbols: [main, main]}\n",
      "TRACING_POLICY_INVALID",
      "spec.uprobes[0].symbols[1]",
    ],
    [
      "addrs",
      "  - {path: /bin/bash, addrs: [4096]}\n",
      "TRACING_POLICY_UNSUPPORTED",
      "spec.uprobes[0].addrs",
      /symbols/,
    ],
    [
      "binaryDigests",
      '  - {path: /bin/bash, symbols: [main], binaryDigests: ["sha256:00"]}\n',
      "TRACING_POLICY_UNSUPPORTED",
      "spec.uprobes[0].binaryDigests",
    ],
    [
      "a kernel type (file) on a register",
      "  - {path: /bin/bash, symbols: [main], args: [{index: 0, type: file}]}\n",
      "TRACING_POLICY_UNSUPPORTED",
      "spec.uprobes[0].args[0].type",
    ],
    [
      "Override (no way to make a user function return early here)",
      `  - path: /bin/bash
    symbols: [readline]
    selectors:
    - matchBinaries: [{operator: In, values: [/bin/bash]}]
      matchActions: [{action: Override, argError: -1}]
`,
      "TRACING_POLICY_UNSUPPORTED",
      "spec.uprobes[0].selectors[0].matchActions[0].action",
      /Sigkill/,
    ],
    [
      "matchParentBinaries (the syscall guard's only)",
      `  - path: /bin/bash
    symbols: [readline]
    selectors:
    - matchParentBinaries: [{operator: In, values: [/usr/sbin/sshd]}]
`,
      "TRACING_POLICY_UNSUPPORTED",
      "spec.uprobes[0].selectors[0].matchParentBinaries",
    ],
  ];
  for (const [name, uprobe, code, path, message] of cases)
    test(`refused: ${name} (${code} at ${path})`, () => refused(doc(uprobe), code, path, message));

  test("a Sigkill on a uprobe is a kill like any other: refused without a podSelector", () =>
    refused(
      KILL.replace("  podSelector: {matchLabels: {app: victim}}\n", ""),
      "TRACING_POLICY_UNSAFE",
      "spec.uprobes[0].selectors[0].matchActions",
    ));

  test("bpftrace program: uprobe:PATH:SYMBOL in the endpoints' scope, args from registers, kill spares PID 1 and the agent", () => {
    const s = compileScript(one(KILL), { netns: [4026532001] }, guards);
    assert.match(
      s.text,
      /^uprobe:\/opt\/app\/bin\/server:check_password \/@scope\[\(uint64\)curtask->nsproxy->net_ns->ns\.inum\] == 1\/ \{$/m,
    );
    assert.match(s.text, /^uprobe:\/opt\/app\/bin\/server:audit_login /m);
    assert.match(s.text, /\$s0 = str\(arg0\);/);
    assert.match(s.text, /\(int64\)arg2/);
    assert.match(s.text, /if \(pid != 1 && pid != 4242\) \{ signal\(9\); \$k = 1; \}/);
    assert.doesNotMatch(s.text, /args->/);
    // What bpftrace's attached_probes must say (2 uprobes, BEGIN, END): fewer is a load failure.
    assert.equal(s.probes, 4);
    assert.deepEqual(s.uprobes, [
      "uprobe:/opt/app/bin/server:check_password",
      "uprobe:/opt/app/bin/server:audit_login",
    ]);
    assert.deepEqual(parseLine('{"type": "attached_probes", "data": {"probes": 3}}'), {
      kind: "attached",
      count: 3,
    });
  });

  test("a uprobe target that did not pass validation never reaches the program (defence in depth)", () => {
    const p = one(KILL);
    const probe = p.probes[0];
    assert.ok(probe);
    for (const [path, symbol] of [
      ['/bin/bash:main { system("id") } uprobe:/bin/x', "main"],
      ["/bin/bash", 'main /1/ { system("id") }'],
    ] as const) {
      const a = { ...probe.attach[0], tracepoint: "x", args: new Map(), uprobe: { path, symbol } };
      const forged: TracingPolicy = { ...p, probes: [{ ...probe, attach: [a] }] };
      assert.throws(() => compileScript(forged, { netns: [1] }, guards), /internal: unchecked uprobe/);
    }
  });

  test("an event line becomes a process_uprobe with path, symbol, args and pod, exported as Tetragon's JSON", () => {
    const p = one(KILL);
    const s = compileScript(p, { netns: [4026532001] }, guards);
    const line = parseLine(
      JSON.stringify({
        type: "printf",
        data: "E\t0\t777\t777\t0\t4026532001\t1\t123456\t1\t9\tserver\\x00\\x00\troot\\x00\n",
      }),
    );
    assert.equal(line.kind, "event");
    if (line.kind !== "event") return;
    const e = toEvent(line.fields, {
      policyName: "up",
      policyNamespace: undefined,
      rules: s.rules,
      now: new Date(0),
    });
    assert.ok(e);
    assert.equal(e.type, "process_uprobe");
    assert.deepEqual(e.uprobe, { path: "/opt/app/bin/server", symbol: "check_password" });
    assert.equal(e.action, "KPROBE_ACTION_SIGKILL");
    // A process the cache does not know yet (its exec not read): the pod comes from its netns.
    const pod = { namespace: "default", name: "web", pod_labels: { app: "web" }, workload: "web" };
    const sink = {
      push: () => undefined,
      processOf: () => undefined,
      podOf: (n: number) => (n === 4026532001 ? pod : undefined),
    };
    const out = policyEventToRuntime(e, sink, "node-1");
    assert.ok("process_uprobe" in out);
    const parsed = parseStrict(JSON.stringify(out));
    const u = parsed["process_uprobe"] as Record<string, unknown>;
    assert.equal(u["path"], "/opt/app/bin/server");
    assert.equal(u["symbol"], "check_password");
    assert.equal(u["action"], "KPROBE_ACTION_SIGKILL");
    assert.equal(u["message"], "login function called");
    assert.deepEqual(u["args"], [{ string_arg: "root", label: "user" }, { int_arg: 9 }]);
    assert.deepEqual((u["process"] as Record<string, unknown>)["pod"], pod);
  });
});
