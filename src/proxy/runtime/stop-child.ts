/**
 * Stopping a supervised child process (the L7 proxy, the mTLS node tunnel): SIGTERM, SIGKILL if it
 * has not exited within `killAfterMs` (a child stuck in a syscall or ignoring TERM must not hold
 * the agent's stop), and resolve once it has exited. One piece of code for both supervisors.
 */
import type { ChildProcess } from "node:child_process";

export async function stopChild(c: ChildProcess, killAfterMs = 2000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return; // gone already: no "exit" will come
  const exited = new Promise<void>((r) => c.once("exit", () => r()));
  c.kill("SIGTERM");
  const t = setTimeout(() => c.kill("SIGKILL"), killAfterMs);
  await exited;
  clearTimeout(t);
}
