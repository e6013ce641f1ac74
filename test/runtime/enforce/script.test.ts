import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileScript } from "../../../src/runtime/enforce/script.js";
import { parseLine, toEvent } from "../../../src/runtime/enforce/output.js";
import type { TracingPolicy } from "../../../src/runtime/policy/types.js";
import { policy, SHADOW_KILL } from "./helpers.js";

const guards = { agentPid: 4242, hostNamespaces: {} };

describe("bpftrace script generation (pure)", () => {
  test("a Sigkill rule is scoped to the endpoints' netns and never signals PID 1 or the agent", () => {
    const s = compileScript(policy(SHADOW_KILL()), { netns: [4026532001, 4026532002] }, guards);
    assert.match(s.text, /@scope\[\(uint64\)4026532001\] = 1;/);
    assert.match(
      s.text,
      /tracepoint:syscalls:sys_enter_openat \/@scope\[\(uint64\)curtask->nsproxy->net_ns->ns\.inum\] == 1\//,
    );
    assert.match(s.text, /if \(pid != 1 && pid != 4242\) \{ signal\(9\); \$k = 1; \}/);
    assert.match(s.text, /\$s1 == "\/etc\/shadow"/);
    assert.doesNotMatch(s.text, /no-shadow/, "the policy name never reaches the program");
    assert.equal(s.rules.length, 1);
  });

  test("a node-wide kill also spares the agent's children (its bpftrace)", () => {
    const p = { ...policy(SHADOW_KILL()), podSelector: undefined };
    const s = compileScript(p, { netns: "node" }, guards);
    assert.match(s.text, /curtask->real_parent->tgid != 4242/);
    assert.doesNotMatch(s.text, /@scope/);
  });

  test("a string that did not pass validation never reaches the text (defence in depth)", () => {
    const p = policy(SHADOW_KILL());
    const probe = p.probes[0];
    assert.ok(probe);
    const sel = probe.selectors[0];
    assert.ok(sel);
    for (const bad of ['x"); system("id', "a\nb", "%s", "\\"]) {
      const forged: TracingPolicy = {
        ...p,
        probes: [
          {
            ...probe,
            selectors: [
              { ...sel, matchArgs: [{ index: 1, kind: "string", operator: "Equal", values: [bad] }] },
            ],
          },
        ],
      };
      assert.throws(() => compileScript(forged, { netns: [1] }, guards), /unchecked string/);
    }
  });

  test("event lines: fields split on tabs; a hostile comm stays one escaped field", () => {
    const s = compileScript(policy(SHADOW_KILL()), { netns: [1] }, guards);
    const data = "E\t0\t77\t78\t0\t4026532001\t9\t123\t1\tev\\x09il\\x0a\\x00\\x00\t/etc/shadow\\x00\\x00\n";
    const l = parseLine(JSON.stringify({ type: "printf", data }));
    assert.equal(l.kind, "event");
    const e =
      l.kind === "event"
        ? toEvent(l.fields, { policyName: "p", policyNamespace: undefined, rules: s.rules, now: new Date(0) })
        : undefined;
    assert.equal(e?.comm, "ev\\x09il\\x0a");
    assert.equal(e?.pid, 77);
    assert.equal(e?.action, "KPROBE_ACTION_SIGKILL");
    assert.equal(e?.args[0]?.value, "/etc/shadow");
    assert.deepEqual(parseLine('{"type": "lost_events", "data": {"events": 12}}'), {
      kind: "lost",
      count: 12,
    });
    assert.equal(parseLine("not json").kind, "other");
  });
});
