/**
 * exec_id on every policy event (root): the agent's runtime pipeline as agent.ts wires it (the
 * native process event source, the syscall guard, the bridge), real processes in an endpoint
 * namespace, each opening a watched path right after its exec. The process source's reader is
 * held back while they run, so every policy event reaches the agent before its process's fork
 * and exec records: each must wait in the event cache and go out with the exec_id of its
 * process_exec event and the exec's binary (not the shell it was forked from), none without.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmdirSync } from "node:fs";
import { describe, test } from "node:test";
import pino from "pino";
import { Registry } from "prom-client";
import type { EndpointView } from "../../../src/agent/controllers/endpoint-record.js";
import type { RuntimeController } from "../../../src/agent/controllers/runtime.js";
import { startRuntime } from "../../../src/agent/controllers/runtime-bridge.js";
import { TracingPoliciesController } from "../../../src/agent/controllers/tracing-policies.js";
import { endpointCgroupPath } from "../../../src/datapath/endpoint-cgroup.js";
import type { ProcessExec, ProcessKprobe } from "../../../src/runtime/events.js";
import { NativeSource } from "../../../src/runtime/source/native.js";
import { Netns, runtimeSkipReason, shIn, until } from "../enforce/helpers.js";

const skip = runtimeSkipReason();
const N = 20;

describe("runtime events: exec_id on every policy event (root)", { skip }, () => {
  test(`${N} new processes whose policy events come before their exec records: each event carries its process_exec's exec_id and binary`, async () => {
    const px = `m4r${randomBytes(3).toString("hex")}`;
    const ns = Netns.add(`${px}-eid`);
    const dir = `/tmp/${px}-eid/`; // never created: the opens fail, the guard still reports them
    const view: EndpointView = {
      name: ns.name,
      namespace: "default",
      id: 1,
      identity: 256,
      labels: { app: "eid" },
      ipv4: "10.255.0.2",
      netns: ns.name,
      hostIfname: "none",
      ingress: { enforced: false, entries: 0 },
      egress: { enforced: false, entries: 0 },
      policyRevision: 0,
    };
    const logger = pino({ level: "silent" });
    const endpoints = (): EndpointView[] => [view];
    const tracing = new TracingPoliciesController({ logger, endpoints });
    let runtime: RuntimeController | undefined;
    try {
      runtime = await startRuntime(
        // held as long as the test needs (the default age, 1 s, is a bound for production, not for a loaded CI)
        { nodeName: `${px}-node`, source: "native", eventCacheAgeMs: 120_000 },
        { logger, endpoints, registry: new Registry() },
        tracing,
      );
      assert.ok(runtime);
      const rt = runtime;
      await tracing.apply(
        `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: ${px}-watch}
spec:
  podSelector: {matchLabels: {app: eid}}
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: Prefix, values: [${dir}]}]
      matchActions: [{action: Post}]
`,
        "eid.yaml",
      );
      const source = rt.source;
      assert.ok(source instanceof NativeSource, "the native source runs here");
      const seen = (): number => tracing.list()[0]?.events ?? 0;
      const kprobes = (): ProcessKprobe[] =>
        rt
          .read({})
          .flatMap((e) => ("process_kprobe" in e && e.process_kprobe.policy_name === `${px}-watch` ? [e.process_kprobe] : [])); // prettier-ignore

      source.pauseReading(true);
      try {
        // One new cat per path: fork (by sh), exec, then at once the watched open.
        const r = await shIn(ns.name, `i=0; while [ $i -lt ${N} ]; do cat ${dir}$i 2>/dev/null; i=$((i+1)); done; echo done`); // prettier-ignore
        assert.equal(r.out.trim(), "done");
        await until(`the guard's ${N} events`, () => seen() >= N);
        assert.deepEqual(kprobes(), [], "no event went out before its process was known");
        assert.ok(Number(rt.status()["eventCacheHeld"]) >= N, "every one was held");
      } finally {
        source.pauseReading(false);
      }
      await until(`${N} process_kprobe events`, () => kprobes().length >= N);
      const execs = new Map<number, ProcessExec>();
      for (const e of rt.read({}))
        if ("process_exec" in e && e.process_exec.process.binary.endsWith("/cat"))
          execs.set(e.process_exec.process.pid, e.process_exec);
      for (const k of kprobes()) {
        const exec = execs.get(k.process.pid);
        assert.ok(exec, `the exec event of pid ${k.process.pid}`);
        assert.equal(k.process.exec_id, exec.process.exec_id, `exec_id of ${k.process.pid}`);
        assert.equal(k.process.binary, exec.process.binary);
        assert.equal(k.process.pod?.name, ns.name);
        assert.equal(k.parent?.exec_id, exec.process.parent_exec_id);
      }
      assert.equal(rt.status()["eventCacheMissed"], 0);
    } finally {
      await tracing.stop();
      await runtime?.stop();
      ns.del();
      const cg = endpointCgroupPath(ns.name);
      if (cg !== undefined)
        try {
          rmdirSync(cg);
        } catch {
          // never made, or already swept
        }
    }
  });
});
