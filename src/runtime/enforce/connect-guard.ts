/**
 * One connect guard: the cgroup connect4/connect6 programs of one policy,
 * attached to the cgroups of the endpoints it selects, owned by one loader
 * process (native/membrane-connect-guard.c, built by `npm run build`).
 *
 *   ConnectRule[] --compileConnect--> hex --stdin--> membrane-connect-guard --BPF links--> cgroups
 *   stdout: ready | error | event lines --parseGuardLine--> ConnectEvent
 *
 * The loader runs under setpriv with the capability bounding set reduced to
 * CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_KILL.
 *
 * Lifetime: the links die with the loader. stop() closes its stdin (it exits,
 * the kernel detaches); the agent's death kills it (PR_SET_PDEATHSIG), so no
 * program refuses connections without an agent to report it. A load that
 * fails leaves nothing attached: the loader attaches only after both programs
 * loaded, and any error exits it (its links and programs go with it).
 * Feature detection is this load itself: a kernel that refuses the programs
 * makes the policy fail with the verifier's or the kernel's reason.
 */
import { existsSync } from "node:fs";
import { GuardLoader } from "./guard-loader.js";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../../errors.js";
import { compileConnect, FLAG_DENY, FLAG_KILL, type ConnectRule } from "./connect-prog.js";

/** dist/bin/membrane-connect-guard, next to this module's compiled tree. */
export function defaultGuardBinary(): string {
  return fileURLToPath(new URL("../../../bin/membrane-connect-guard", import.meta.url));
}

const CAPS = "-all,+bpf,+perfmon,+net_admin,+kill";

export interface ConnectEvent {
  readonly rule: number;
  readonly denied: boolean;
  readonly killed: boolean;
  readonly pid: number;
  readonly tid: number;
  readonly uid: number;
  readonly ktimeNs: bigint;
  readonly cgroupId: string;
  readonly family: 4 | 6;
  readonly port: number;
  /** Dotted IPv4 or full IPv6 text. */
  readonly address: string;
  /** Process name, printable ASCII with other bytes as `\xNN`. */
  readonly comm: string;
}

export type GuardLine =
  | { readonly kind: "ready" }
  | { readonly kind: "error"; readonly text: string }
  | { readonly kind: "lost"; readonly total: number }
  | { readonly kind: "event"; readonly event: ConnectEvent }
  | { readonly kind: "other" };

function addressText(hex: string, family: 4 | 6): string {
  const b = Buffer.from(hex, "hex");
  if (family === 4) return [...b].join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(":");
}

function commText(hex: string): string {
  if (hex === "-") return "";
  return [...Buffer.from(hex, "hex")]
    .map((c) =>
      c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`,
    )
    .join("");
}

export function parseGuardLine(line: string): GuardLine {
  if (line === "ready") return { kind: "ready" };
  if (line.startsWith("error ")) return { kind: "error", text: line.slice(6, 1006) };
  const lost = /^lost (\d{1,20})$/.exec(line);
  if (lost) return { kind: "lost", total: Number(lost[1]) };
  const m =
    /^event (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) ([46]) (\d+) ([0-9a-f]{8}|[0-9a-f]{32}) (-|[0-9a-f]{2,32})$/.exec(
      line,
    );
  if (!m) return { kind: "other" };
  const flags = Number(m[1]);
  const family = Number(m[7]) as 4 | 6;
  if ((family === 4) !== (m[9]?.length === 8)) return { kind: "other" };
  return {
    kind: "event",
    event: {
      rule: flags & 0xffff,
      denied: (flags & FLAG_DENY) !== 0,
      killed: (flags & FLAG_KILL) !== 0,
      pid: Number(m[2]),
      tid: Number(m[3]),
      uid: Number(m[4]),
      ktimeNs: BigInt(m[5] ?? "0"),
      cgroupId: m[6] ?? "0",
      family,
      port: Number(m[8]),
      address: addressText(m[9] ?? "", family),
      comm: commText(m[10] ?? "-"),
    },
  };
}

export interface ConnectGuardOptions {
  readonly rules: readonly ConnectRule[];
  /** cgroup v2 directories to attach to (at least one). */
  readonly cgroups: readonly string[];
  /** Printed in errors: which policy this is. */
  readonly what: string;
  onEvent(e: ConnectEvent): void;
  /** New kernel-lost events (ring buffer full). */
  onLost(count: number): void;
  onExit(reason: string): void;
  readonly binary?: string;
  /** Safety net only. */
  readonly loadTimeoutMs?: number;
}

function failed(what: string, why: string, cause?: unknown): MembraneError {
  return new MembraneError("RUNTIME_ENFORCER_FAILED", `Cannot load ${what}: ${why}`, {
    ...(cause === undefined ? {} : { cause }),
    hint: "nothing of this policy stays attached: the connect guard attaches every cgroup or none",
  });
}

export class ConnectGuard {
  private constructor(private readonly loader: GuardLoader) {}

  get pid(): number | undefined {
    return this.loader.pid;
  }

  static async start(o: ConnectGuardOptions): Promise<ConnectGuard> {
    const bin = o.binary ?? defaultGuardBinary();
    if (!existsSync(bin))
      throw failed(o.what, `the connect guard ${bin} is missing (build it: npm run build, needs gcc)`);
    if (o.cgroups.length === 0) throw failed(o.what, "no cgroup to attach to");
    const input =
      `prog4 ${compileConnect(o.rules, 4).toString("hex")}\n` +
      `prog6 ${compileConnect(o.rules, 6).toString("hex")}\n` +
      o.cgroups.map((c) => `cgroup ${c}\n`).join("") +
      "go\n";
    // Least privilege: the loader keeps only what it uses (checked on 6.18: without CAP_PERFMON the
    // verifier refuses the event helpers; CAP_NET_ADMIN attaches to cgroups; CAP_KILL for Sigkill).
    const loader = await GuardLoader.start({
      bin,
      caps: CAPS,
      input,
      name: "the connect guard",
      failed: (why, cause) => failed(o.what, why, cause),
      onEventLine: (payload) => {
        const l = parseGuardLine(`event ${payload}`);
        if (l.kind === "event") o.onEvent(l.event);
      },
      onLost: (n) => o.onLost(n),
      onExit: (why) => o.onExit(why),
      ...(o.loadTimeoutMs !== undefined ? { loadTimeoutMs: o.loadTimeoutMs } : {}),
    });
    return new ConnectGuard(loader);
  }

  /** Detaches (the loader exits when its stdin closes); SIGKILL after a safety net. */
  stop(): Promise<void> {
    return this.loader.stop();
  }
}
