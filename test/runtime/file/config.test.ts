import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isMembraneError } from "../../../src/errors.js";
import { compileScript } from "../../../src/runtime/enforce/script.js";
import { compileResponder, needsResponder, type FsView } from "../../../src/runtime/file/config.js";
import { parseResponderLine, reportToEvent } from "../../../src/runtime/file/responder.js";
import { parseTracingPolicies } from "../../../src/runtime/policy/parse.js";
import type { TracingPolicy } from "../../../src/runtime/policy/types.js";

const guards = { agentPid: 4242, hostNamespaces: { Net: 4026531840 } };
const fs: FsView = {
  kind: (p) =>
    ({ "/etc": "dir", "/etc/shadow": "file", "/srv": "dir", "/": "dir" })[p] as "file" | "dir" | undefined,
};

function deny(hook: string, selectors: string, idx = 0): string {
  return `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: deny-files}
spec:
  podSelector: {matchLabels: {app: victim}}
  kprobes:
  - call: ${hook}
    args: [{index: ${idx}, type: file}]
    selectors:
${selectors}`;
}
const one = (y: string): TracingPolicy => {
  const [p] = parseTracingPolicies(y, "t.yaml");
  if (!p) throw new Error("no policy");
  return p;
};
function refused(y: string): { code: string; message: string } {
  try {
    parseTracingPolicies(y, "t.yaml");
  } catch (e) {
    assert.ok(isMembraneError(e));
    return { code: e.code, message: e.describe() };
  }
  throw new Error("accepted");
}

const SHADOW = `    - matchArgs: [{index: 0, operator: Equal, values: [/etc/shadow, /srv/new/key]}]
      matchActions: [{action: Override, argError: -1}]
`;

describe("file-access denial: TracingPolicy Override on file hooks (fanotify)", () => {
  test("Override on security_file_permission is accepted and served by the responder, not by bpftrace", () => {
    const p = one(deny("security_file_permission", SHADOW));
    assert.equal(p.probes[0]?.fanotify, "open+read");
    assert.ok(needsResponder(p));
    assert.equal(compileScript(p, { netns: [7] }, guards).rules.length, 0, "no bpftrace rule");
  });

  test("an Equal path: inode mark on the file, directory mark on its parent, filesystem mark where the parent is missing", () => {
    const c = compileResponder(one(deny("security_file_permission", SHADOW)), { netns: [7, 9] }, guards, fs);
    assert.deepEqual(c.marks, [
      { kind: "inode", events: "open+read", path: "/etc/shadow" },
      { kind: "dir", events: "open+read", path: "/etc" },
      { kind: "filesystem", events: "open", path: "/srv" },
    ]);
    assert.equal(
      c.text,
      [
        "membrane-fanotify 1",
        "scope 7",
        "scope 9",
        "exempt 1",
        "exempt 4242",
        "rule 0 deny both",
        "cond path eq 2",
        "val /etc/shadow",
        "val /srv/new/key",
        "mark inode both /etc/shadow",
        "mark dir both /etc",
        "mark filesystem open /srv",
        "end",
        "",
      ].join("\n"),
    );
  });

  test("a Prefix path marks the file system (open only); selectors keep their order, NoPost denies quietly", () => {
    const p = one(
      deny(
        "fd_install",
        `    - matchBinaries: [{operator: In, values: [/usr/bin/passwd]}]
    - matchArgs: [{index: 1, operator: Prefix, values: [/etc/ssl/private/]}]
      matchNamespaces: [{namespace: Net, operator: NotIn, values: [host_ns]}]
      matchActions: [{action: Override, argError: -1}, {action: NoPost}]
`,
        1,
      ),
    );
    const c = compileResponder(p, { netns: "node" }, guards, fs);
    assert.deepEqual(c.marks, [{ kind: "filesystem", events: "open", path: "/etc" }]);
    assert.deepEqual(c.text.split("\n").slice(0, 12), [
      "membrane-fanotify 1",
      "node",
      "exempt 1",
      "exempt 4242",
      "rule 0 pass open",
      "cond bin eq 1",
      "val /usr/bin/passwd",
      "rule 1 denyq open",
      "cond path pre 1",
      "val /etc/ssl/private/",
      "cond ns-net ne 1",
      "val 4026531840",
    ]);
    assert.equal(c.rules[1]?.pathArg, 1);
  });

  const bad: { name: string; yaml: string; code: string; where: RegExp }[] = [
    {
      name: "Override on a syscall is refused with the hooks that can serve it",
      yaml: deny(
        "sys_openat\n    syscall: true",
        "    - matchActions: [{action: Override, argError: -1}]\n",
      ).replace("type: file", "type: int"),
      code: "TRACING_POLICY_UNSUPPORTED",
      where: /matchActions\[0\]\.action.*security_file_permission/s,
    },
    {
      name: "argError other than -1 (fanotify answers EPERM only)",
      yaml: deny(
        "security_file_open",
        "    - matchArgs: [{index: 0, operator: Equal, values: [/etc/shadow]}]\n      matchActions: [{action: Override, argError: -13}]\n",
      ),
      code: "TRACING_POLICY_UNSUPPORTED",
      where: /argError.*-1/s,
    },
    {
      name: "Override and Sigkill in one selector",
      yaml: deny(
        "security_file_open",
        "    - matchArgs: [{index: 0, operator: Equal, values: [/etc/shadow]}]\n      matchActions: [{action: Override, argError: -1}, {action: Sigkill}]\n",
      ),
      code: "TRACING_POLICY_UNSUPPORTED",
      where: /selectors\[0\]\.matchActions.*two selectors/s,
    },
    {
      name: "matchCapabilities beside an Override (the responder cannot check it)",
      yaml: deny(
        "security_file_open",
        "    - matchCapabilities: [{type: Effective, operator: In, values: [CAP_SYS_ADMIN]}]\n    - matchArgs: [{index: 0, operator: Equal, values: [/etc/shadow]}]\n      matchActions: [{action: Override, argError: -1}]\n",
      ),
      code: "TRACING_POLICY_UNSUPPORTED",
      where: /selectors\[0\]\.matchCapabilities/,
    },
    {
      name: "an Override for every open of the node (no podSelector, no narrowing) is unsafe",
      yaml: deny("security_file_open", "    - matchActions: [{action: Override, argError: -1}]\n").replace(
        "  podSelector: {matchLabels: {app: victim}}\n",
        "",
      ),
      code: "TRACING_POLICY_UNSAFE",
      where: /podSelector/,
    },
  ];
  for (const c of bad)
    test(`refused: ${c.name}`, () => {
      const r = refused(c.yaml);
      assert.equal(r.code, c.code, r.message);
      assert.match(r.message, c.where);
    });

  test("reports: hostile or oversized lines are ignored; a denial becomes a process_kprobe Override with the path", () => {
    assert.deepEqual(parseResponderLine("x".repeat(60_000)), { kind: "other" });
    assert.deepEqual(parseResponderLine('{"rule":"0"}'), { kind: "other" });
    assert.deepEqual(parseResponderLine('{"error":"EACCES: /x"}'), { kind: "error", message: "EACCES: /x" });
    const p = one(deny("security_file_permission", SHADOW));
    const c = compileResponder(p, { netns: [7] }, guards, fs);
    const l = parseResponderLine(
      '{"rule":0,"pid":12,"uid":0,"netns":7,"ktime":5,"mask":"open","verdict":"deny","unverified":false,"trunc":false,"lost":0,"errors":0,"path":"/tmp/a\\\\x0ab","binary":"/usr/bin/cat"}',
    );
    assert.equal(l.kind, "report");
    if (l.kind !== "report") return;
    assert.equal(l.report.path, "/tmp/a\\x0ab", "a newline arrives as the text \\x0a");
    const e = reportToEvent(l.report, {
      policyName: "deny-files",
      policyNamespace: undefined,
      rules: c.rules,
      now: new Date(0),
    });
    assert.equal(e?.action, "KPROBE_ACTION_OVERRIDE");
    assert.equal(e?.functionName, "security_file_permission");
    assert.equal(e?.comm, "cat");
    assert.deepEqual(
      e?.args.map((a) => a.value),
      ["/tmp/a\\x0ab"],
    );
    assert.equal(
      reportToEvent(
        { ...l.report, rule: 9 },
        { policyName: "x", policyNamespace: undefined, rules: c.rules, now: new Date(0) },
      ),
      undefined,
    );
  });
});
