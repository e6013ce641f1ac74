/**
 * One syscall guard: the Sigkill/Signal/Post programs of one policy's
 * syscall probes (kill-prog.ts, rules from native-rules.ts), owned by one
 * loader process (native/membrane-syscall-guard.c, built by `npm run build`).
 * It replaces bpftrace for every probe it can serve (native-rules.ts says
 * which).
 *
 *   probes + scope --guardSpec--> GuardSpec --guardPrograms(kernel offsets)--> hex --stdin--> loader
 *   stdout frames: READY | ERROR | RECORDS | LOST --decodeKillRecordBytes--> guardEvent --> RuntimePolicyEvent
 *
 * Why our own programs rather than bpftrace: no compile per load (bpftrace
 * took about a second per policy, more under load), no CAP_SYS_ADMIN (the
 * loader keeps CAP_BPF + CAP_PERFMON), paths compared up to 4,095 bytes
 * (bpftrace's 512-byte stack held 80), and binary records instead of JSON
(read in frames, guard-frames.ts).
 * The kill itself is the same bpf_send_signal, in the offending task's
 * context at syscall entry (kill-prog.ts says what the syscall still does).
 *
 * Lifetime: as the connect guard's. The programs die with the loader; the
 * agent's death kills it (PR_SET_PDEATHSIG): no program kills without an
 * agent to report it. A failure before "ready" leaves nothing attached.
 */
import { existsSync } from "node:fs";
import { GuardLoader } from "./guard-loader.js";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../../errors.js";
import type { TracingPolicy, TracingProbe } from "../policy/types.js";
import type { BtfLookup } from "../source/btf.js";
import type { RuntimePolicyEvent } from "./events.js";
import { killLayoutFrom } from "./kill-layout.js";
import { guardPrograms } from "./kill-prog.js";
import { decodeKillRecordBytes, EVENT_SIZE } from "./kill-record.js";
import { guardEvent, guardSpec } from "./native-rules.js";
import type { ScriptGuards } from "./script.js";
import { seedMasks } from "./seeds.js";

/** dist/bin/membrane-syscall-guard, next to this module's compiled tree. */
export function defaultSyscallGuardBinary(): string {
  return fileURLToPath(new URL("../../../bin/membrane-syscall-guard", import.meta.url));
}

const CAPS = "-all,+bpf,+perfmon";

export interface SyscallGuardOptions {
  readonly policy: Pick<TracingPolicy, "name" | "namespace">;
  /** Probes the guard serves (native-rules.ts splitProbes). */
  readonly probes: readonly TracingProbe[];
  readonly scope: readonly number[] | "node";
  readonly guards: ScriptGuards;
  /** Kernel struct offsets (btf-cache.ts withBtf). */
  readonly btf: <T>(compute: (b: BtfLookup) => T) => T;
  /** Printed in errors: which policy this is. */
  readonly what: string;
  onEvent(e: RuntimePolicyEvent): void;
  onLost(count: number): void;
  onExit(reason: string): void;
  readonly binary?: string;
  readonly loadTimeoutMs?: number;
}

function failed(what: string, why: string, cause?: unknown): MembraneError {
  return new MembraneError("RUNTIME_ENFORCER_FAILED", `Cannot load ${what}: ${why}`, {
    ...(cause === undefined ? {} : { cause }),
    hint: "nothing of this policy stays attached: the syscall guard attaches every program or none",
  });
}

export class SyscallGuard {
  private constructor(private readonly loader: GuardLoader) {}

  get pid(): number | undefined {
    return this.loader.pid;
  }

  /** Attaches the programs; undefined when the probes leave nothing to attach (Override only: fanotify's). */
  static async start(o: SyscallGuardOptions): Promise<SyscallGuard | undefined> {
    const { spec, rules } = guardSpec(o.probes, o.scope, o.guards);
    if (spec.groups.length === 0) return undefined;
    const bin = o.binary ?? defaultSyscallGuardBinary();
    if (!existsSync(bin))
      throw failed(o.what, `the syscall guard ${bin} is missing (build it: npm run build, needs gcc)`);
    let input: string;
    try {
      const layout = o.btf(killLayoutFrom);
      input = guardPrograms(spec, layout)
        .map((p) => `prog ${p.tracepoint} ${p.insns.toString("hex")}\n`)
        .join("");
      for (const [pid, mask] of seedMasks(spec)) input += `bin ${pid} ${mask}\n`;
    } catch (e) {
      throw failed(o.what, e instanceof Error ? e.message : String(e), e);
    }
    const loader = await GuardLoader.start({
      bin,
      caps: CAPS,
      input: `${input}go\n`,
      name: "the syscall guard",
      failed: (why, cause) => failed(o.what, why, cause),
      onEventLine: () => undefined,
      records: {
        size: EVENT_SIZE,
        on: (bytes) => {
          const r = decodeKillRecordBytes(bytes);
          const e = r && guardEvent(r, rules, o.policy, new Date());
          if (e) o.onEvent(e);
        },
      },
      onLost: (n) => o.onLost(n),
      onExit: (why) => o.onExit(why),
      ...(o.loadTimeoutMs !== undefined ? { loadTimeoutMs: o.loadTimeoutMs } : {}),
    });
    return new SyscallGuard(loader);
  }

  /** Detaches (the loader exits when its stdin closes); SIGKILL after a safety net. */
  stop(): Promise<void> {
    return this.loader.stop();
  }
}
