/**
 * An exclusive lock on a state directory, so that two agents never append to
 * one log. Node has no flock(2), so the lock is a file created with O_EXCL
 * holding `<pid> <process start time>`. A lock whose process is gone (or
 * whose pid now belongs to a process started at another time, after a
 * reboot) is stale and is taken over.
 */
import { readFileSync } from "node:fs";
import { link, open, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { MembraneError } from "../errors.js";

export const LOCK_FILE = "store.lock";

/** The start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat); "" if unknown. */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces and parentheses: split after the last ")".
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] ?? "";
  } catch {
    return "";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** True when the lock text names a process that is still running. */
export function lockIsLive(text: string): boolean {
  const m = /^(\d+) (\S*)\n?$/.exec(text);
  if (!m) return false;
  const pid = Number(m[1]);
  if (!alive(pid)) return false;
  const recorded = m[2] ?? "";
  const now = startTime(pid);
  return recorded === "" || now === "" || recorded === now;
}

export interface DirLock {
  readonly path: string;
  release(): Promise<void>;
}

export async function lockDir(dir: string): Promise<DirLock> {
  const path = join(dir, LOCK_FILE);
  const mine = `${process.pid} ${startTime(process.pid)}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, "wx", 0o600);
      await fh.writeFile(mine);
      await fh.sync();
      await fh.close();
      return {
        path,
        release: async () => {
          const text = await readFile(path, "utf8").catch(() => "");
          if (text === mine) await unlink(path).catch(() => undefined);
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new MembraneError(
          "STORE_FAILED",
          `Cannot lock the state directory ${dir}: ${(e as Error).message}`,
          {
            cause: e,
            hint: "check that the directory exists and is writable by the agent",
          },
        );
      }
    }
    const text = await readFile(path, "utf8").catch(() => "");
    if (lockIsLive(text)) {
      const pid = text.split(" ")[0] ?? "?";
      throw new MembraneError(
        "STORE_LOCKED",
        `Cannot open the store in ${dir}: it is locked by the running process ${pid}`,
        { hint: `stop the other agent, or give this one another state directory; the lock is ${path}` },
      );
    }
    // Stale: move it aside and retry. If another taker replaced the stale lock with its own
    // fresh one between our read and our rename, what we moved is not what we read: put it
    // back (link fails rather than overwrite) so that the next round sees a live lock.
    const aside = `${path}.stale.${process.pid}`;
    try {
      await rename(path, aside);
      const moved = await readFile(aside, "utf8").catch(() => text);
      if (moved !== text) await link(aside, path).catch(() => undefined);
      await unlink(aside);
    } catch {
      // Someone else moved it first; the next round decides.
    }
  }
  throw new MembraneError(
    "STORE_LOCKED",
    `Cannot open the store in ${dir}: the lock ${path} keeps changing hands`,
    {
      hint: "another agent is starting on the same state directory; stop it and retry",
    },
  );
}
