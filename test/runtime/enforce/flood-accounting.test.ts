/**
 * An event flood through the syscall guard (our sys_enter program, a Post policy on openat) from
 * real processes in an endpoint namespace: every event the kernel matched is either delivered or
 * counted as lost, in the kernel (the ring buffer was full) or against the agent's per-policy
 * budget, and the sink hears of every loss (bench/runtime-rate.ts measures the rate; this checks
 * the books balance).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { RuntimeEnforcer } from "../../../src/runtime/enforce/enforcer.js";
import type { RuntimePolicyEvent } from "../../../src/runtime/enforce/events.js";
import { Netns, policy, runtimeSkipReason, shIn, until } from "./helpers.js";

const skip = runtimeSkipReason();
const OPENS = 20_000;

describe(
  "syscall guard: an event flood is delivered or counted, never silently dropped (root)",
  { skip },
  () => {
    test(`${OPENS} matching opens over a budget of 1,000 events/s: delivered + lost (kernel, agent) = opens, and the sink was told of every loss`, async () => {
      const px = `m3r${randomBytes(3).toString("hex")}`;
      const ns = Netns.add(`${px}-flood`);
      const events: RuntimePolicyEvent[] = [];
      const told = { kernel: 0, agent: 0 };
      const enf = new RuntimeEnforcer({
        sink: {
          onPolicyEvent: (e) => void events.push(e),
          onLost: (_name, l) => {
            told.kernel += l.kernel;
            told.agent += l.agent;
          },
        },
        syscallGuard: "native",
        eventsPerSecond: 1_000,
      });
      const dir = `/tmp/${px}-flood/`;
      try {
        await enf.setEndpoints([ns.endpoint({ app: "flood" })]);
        const st = await enf.apply(
          policy(`apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: flood}
spec:
  podSelector: {matchLabels: {app: flood}}
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: Prefix, values: [${dir}]}]
      matchActions: [{action: Post}]
`),
        );
        assert.deepEqual(st.programs, ["syscall-guard"]);
        // dash opens each (missing) file itself: one openat per iteration, no fork.
        const r = await shIn(
          ns.name,
          `exec 2>/dev/null; i=0; while [ $i -lt ${OPENS} ]; do true < ${dir}$i; i=$((i+1)); done; echo done`,
        );
        assert.equal(r.out.trim(), "done");
        const status = (): { events: number; kernel: number; agent: number } => {
          const s = enf.list()[0];
          return { events: s?.events ?? 0, kernel: s?.lost.kernel ?? 0, agent: s?.lost.agent ?? 0 };
        };
        await until("every open read or counted lost", () => status().events + status().kernel === OPENS);
        const s = status();
        assert.equal(events.length + s.agent, s.events, "read = delivered + over the budget");
        assert.ok(s.agent > 0, "the budget cut the flood (1,000/s against a shell loop)");
        assert.ok(events.length > 0 && events.length < OPENS);
        assert.deepEqual(told, { kernel: s.kernel, agent: s.agent }, "the sink heard of every loss");
        const e = events[0];
        assert.equal(e?.action, "KPROBE_ACTION_POST");
        assert.equal(e?.netnsInode, ns.inode);
        assert.ok(e?.args[0]?.value?.startsWith(dir), `the path: ${String(e?.args[0]?.value)}`);
      } finally {
        await enf.stop();
        ns.del();
      }
    });
  },
);
