/**
 * TracingPolicy events into the runtime export: the tracing-policies
 * controller's RuntimeEventSink (src/runtime/enforce/events.ts) feeding the
 * runtime controller's RuntimeSink (src/runtime/events.ts), so that a kill
 * is one more Tetragon JSON line (process_kprobe / process_tracepoint / process_uprobe with
 * policy_name and action) beside the exec and exit events, counted in
 * tetragon_policy_events_total (src/runtime/policy-event.ts builds it). An
 * event whose process the cache does not know yet waits in the runtime
 * controller's event cache (src/runtime/event-cache.ts) when the sink has one
 * (`pushPolicy`).
 */
import type { RuntimeEventSink } from "../../runtime/enforce/events.js";
import type { RuntimeSink } from "../../runtime/events.js";
import { policyEventToRuntime } from "../../runtime/policy-event.js";
import { RuntimeController, type RuntimeControllerDeps, type RuntimeParams } from "./runtime.js";

export { policyEventToRuntime };

/** The sink the tracing-policies controller reports into when runtime events are on. */
export function runtimeBridge(sink: RuntimeSink, nodeName: string): RuntimeEventSink {
  return {
    onPolicyEvent: (e) =>
      sink.pushPolicy ? sink.pushPolicy(e) : sink.push(policyEventToRuntime(e, sink, nodeName)),
    onLost: (_policy, lost) => sink.policyLost?.(lost),
  };
}

/**
 * Starts the runtime controller (`membrane agent --runtime-events`) and routes
 * the TracingPolicy events into it; undefined when runtime events are off
 * (TracingPolicy events then stay in the tracing controller's recent list).
 */
export async function startRuntime(
  params: RuntimeParams | undefined,
  d: Omit<RuntimeControllerDeps, "registry"> & {
    readonly registry: RuntimeControllerDeps["registry"] | undefined;
  },
  tracing: { setSink(s: RuntimeEventSink | undefined): void },
): Promise<RuntimeController | undefined> {
  if (!params) return undefined;
  const { registry, ...rest } = d;
  const runtime = new RuntimeController(params, registry ? { ...rest, registry } : rest);
  await runtime.start();
  tracing.setSink(runtimeBridge(runtime, params.nodeName));
  return runtime;
}
