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
