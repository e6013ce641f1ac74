/**
 * Tetragon's process identifiers (pkg/process/process_id_linux.go):
 * exec_id = base64("<node name>:<ktime>:<pid>"), ktime being the monotonic
 * time (ns) of the exec or clone that started this process image, so a pid
 * reused later gets another id, and a process that execs gets a new one.
 */
export function execId(nodeName: string, ktime: bigint, pid: number): string {
  return Buffer.from(`${nodeName}:${ktime}:${pid}`, "utf8").toString("base64");
}

/** Wall-clock time of a monotonic ktime, as Tetragon's timestamps (RFC 3339, ns). */
export function ktimeToIso(ktime: bigint, bootNs: bigint): string {
  const ns = bootNs + ktime;
  const ms = ns / 1_000_000n;
  const iso = new Date(Number(ms)).toISOString(); // ...sss Z
  const frac = (ns % 1_000_000_000n).toString().padStart(9, "0");
  return iso.slice(0, 19) + "." + frac + "Z";
}

/**
 * ktimeToIso for a stream of ktimes (same result, checked in test/runtime/export-line.test.ts):
 * plain numbers while the ktime is exact as one (uptime under 104 days), and the date and
 * seconds made once per second of events instead of a BigInt division and a Date per event.
 */
export class IsoClock {
  private readonly bootSec: number;
  private readonly bootRem: number;
  private sec = -1;
  private prefix = "";

  constructor(private readonly bootNs: bigint) {
    this.bootSec = Number(bootNs / 1_000_000_000n);
    this.bootRem = Number(bootNs % 1_000_000_000n);
  }

  iso(ktime: bigint): string {
    if (ktime < 0n || ktime > 9_007_199_254_740_991n || this.bootNs < 0n)
      return ktimeToIso(ktime, this.bootNs);
    const k = Number(ktime);
    let s = Math.floor(k / 1e9);
    let rem = k - s * 1e9 + this.bootRem;
    if (rem >= 1e9) {
      rem -= 1e9;
      s++;
    }
    s += this.bootSec;
    if (s !== this.sec) {
      this.sec = s;
      this.prefix = new Date(s * 1000).toISOString().slice(0, 19) + ".";
    }
    return this.prefix + String(rem).padStart(9, "0") + "Z";
  }
}

/** Boot time in wall-clock ns (CLOCK_REALTIME - CLOCK_MONOTONIC; Node's hrtime is CLOCK_MONOTONIC). */
export function bootTimeNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
}

/** Signal names by number (x86-64), for process_exit.signal. */
const SIGNALS = [
  "",
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGILL",
  "SIGTRAP",
  "SIGABRT",
  "SIGBUS",
  "SIGFPE",
  "SIGKILL",
  "SIGUSR1",
  "SIGSEGV",
  "SIGUSR2",
  "SIGPIPE",
  "SIGALRM",
  "SIGTERM",
  "SIGSTKFLT",
  "SIGCHLD",
  "SIGCONT",
  "SIGSTOP",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU",
  "SIGURG",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGVTALRM",
  "SIGPROF",
  "SIGWINCH",
  "SIGIO",
  "SIGPWR",
  "SIGSYS",
];

/** A wait(2) status as Tetragon reports it: the signal's name, or the exit code. */
export function exitStatus(code: number): { signal?: string; status: number } {
  const sig = code & 0x7f;
  if (sig !== 0) return { signal: SIGNALS[sig] ?? `SIG${sig}`, status: 0 };
  return { status: (code >> 8) & 0xff };
}
