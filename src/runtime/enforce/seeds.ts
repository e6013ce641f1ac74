/**
 * The process masks the syscall guard starts with (kill-prog.ts learns them
 * at exec and fork, which it cannot see for processes that started before it
 * attached): read from /proc when a policy loads.
 *
 *   /proc/<pid>/exe, /stat (ppid), /ns/net --seedMasks--> tgid -> mask --"bin" lines--> the loader's map
 *
 * A seeded binary is /proc/<pid>/exe, the resolved path (`/usr/bin/dash`),
 * where a process exec'd later is known by the path given to execve
 * (`/bin/sh`); followForks seeds the listed processes and their descendants
 * living now. A process that forks between this scan and the attach is
 * missed (its child gets no mask: not followed, its binary unknown).
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { followBit, type GuardSpec } from "./kill-spec.js";

export function seedMasks(spec: GuardSpec, proc = "/proc"): Map<number, bigint> {
  const out = new Map<number, bigint>();
  if (spec.binaries.length + spec.follows.length === 0) return out;
  // Parents may live outside the selected endpoints: with matchParentBinaries every process is seeded.
  const scope = spec.scope === "node" || spec.parents ? undefined : new Set(spec.scope);
  const ppid = new Map<number, number>();
  for (const d of readdirSync(proc)) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`${proc}/${d}/stat`, "utf8");
      ppid.set(Number(d), Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // gone meanwhile
    }
  }
  for (const pid of ppid.keys()) {
    try {
      if (scope && !scope.has(statSync(`${proc}/${pid}/ns/net`).ino)) continue;
    } catch {
      continue;
    }
    let mask = 0n;
    let exe: string | undefined;
    try {
      exe = readlinkSync(`${proc}/${pid}/exe`);
    } catch {
      exe = undefined; // a kernel thread, or gone
    }
    if (exe !== undefined)
      spec.binaries.forEach((b, i) => {
        if (b.values.some((v) => (b.prefix ? exe.startsWith(v) : exe === v))) mask |= 1n << BigInt(i);
      });
    spec.follows.forEach((f, j) => {
      for (let p = pid, n = 0; p > 0 && n < 256; p = ppid.get(p) ?? 0, n++)
        if (f.pids.includes(p)) {
          mask |= 1n << BigInt(followBit(j));
          break;
        }
    });
    if (mask !== 0n) out.set(pid, mask);
  }
  return out;
}
