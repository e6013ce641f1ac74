/**
 * Picks the process event source by trying: the native one (./native.ts)
 * first; when it cannot load (no BTF, a verifier that refuses the programs,
 * raw tracepoints missing, the loader not built), bpftrace (./bpftrace.ts),
 * with the native one's reason kept for the status and the log. Never by
 * asking a tool what the kernel supports: only a load says.
 *
 *   prefer "auto":     native --fails--> bpftrace --fails--> RUNTIME_SOURCE_FAILED (both reasons)
 *   prefer "native":   native only;  prefer "bpftrace": bpftrace only
 */
import { MembraneError } from "../../errors.js";
import { BpftraceSource, type BpftraceSourceParams } from "./bpftrace.js";
import { NativeSource, type NativeSourceParams } from "./native.js";
import type { ProcessSource } from "./source.js";

export type SourcePreference = "auto" | "native" | "bpftrace";

export interface SelectParams extends NativeSourceParams, BpftraceSourceParams {
  readonly prefer?: SourcePreference;
  /** Told why the native source could not start, before the fallback starts. */
  readonly onFallback?: (why: string) => void;
}

/** Starts a source; the one that started is returned (stop it when done). */
export async function startProcessSource(p: SelectParams): Promise<ProcessSource> {
  const prefer = p.prefer ?? "auto";
  let nativeWhy = "";
  if (prefer !== "bpftrace") {
    const native = new NativeSource(p);
    try {
      await native.start();
      return native;
    } catch (e) {
      await native.stop();
      if (prefer === "native") throw e;
      nativeWhy = e instanceof Error ? e.message : String(e);
      p.onFallback?.(nativeWhy);
    }
  }
  const bpftrace = new BpftraceSource(p);
  try {
    await bpftrace.start();
    return bpftrace;
  } catch (e) {
    await bpftrace.stop();
    if (!nativeWhy) throw e;
    throw new MembraneError(
      "RUNTIME_SOURCE_FAILED",
      `Cannot start a process event source: native: ${nativeWhy}; bpftrace: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}
