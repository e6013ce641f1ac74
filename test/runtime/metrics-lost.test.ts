/** TracingPolicy event losses reach Tetragon's missed-events counter (through the agent's bridge). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { runtimeBridge } from "../../src/agent/controllers/runtime-bridge.js";
import { RuntimeMetrics } from "../../src/runtime/metrics.js";

test("policy events lost in the kernel or over the agent's budget count in tetragon_bpf_missed_events_total", async () => {
  const m = new RuntimeMetrics();
  const bridge = runtimeBridge(
    { push: () => undefined, processOf: () => undefined, policyLost: (l) => m.policyLost(l) },
    "node-a",
  );
  bridge.onLost?.("no-shadow", { kernel: 3, agent: 0 });
  bridge.onLost?.("no-shadow", { kernel: 0, agent: 2 });
  const text = await m.registry.metrics();
  assert.match(text, /tetragon_bpf_missed_events_total\{msg_op="kprobe",error="overflow"\} 3/);
  assert.match(text, /tetragon_bpf_missed_events_total\{msg_op="kprobe",error="rate_limit"\} 2/);
});
