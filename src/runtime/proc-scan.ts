/**
 * Processes that ran before the agent started, read from /proc (like
 * Tetragon's procfs walk, flag "procFS"): their exec_id uses the start time
 * /proc gives (clock ticks since boot, in ns), so every process alive at start
 * has an entry and its children's events name their parent. Bounded by
 * MAX_SCAN; a process that exits during the scan is skipped.
 */
import { readdir, readFile, readlink, stat } from "node:fs/promises";
import { execId, ktimeToIso } from "./exec-id.js";
import type { ProcessCache } from "./process-cache.js";
import { joinArguments } from "./process-cache.js";

export const MAX_SCAN = 65_536;
/** USER_HZ: /proc's clock ticks (100 on every Linux architecture Membrane runs on). */
const TICK_NS = 10_000_000n;

async function one(
  procRoot: string,
  pid: number,
  cache: ProcessCache,
  nodeName: string,
  bootNs: bigint,
): Promise<void> {
  const dir = `${procRoot}/${pid}`;
  const statText = await readFile(`${dir}/stat`, "utf8");
  // comm may contain spaces and parentheses: fields start after the last ')'.
  const rest = statText.slice(statText.lastIndexOf(")") + 2).split(" ");
  const ppid = Number(rest[1]);
  const startTicks = BigInt(rest[19] ?? "0");
  const ktime = startTicks * TICK_NS;
  const status = await readFile(`${dir}/status`, "utf8");
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? "0");
  const auid = Number((await readFile(`${dir}/loginuid`, "utf8").catch(() => "4294967295")).trim());
  const argv = (await readFile(`${dir}/cmdline`)).toString("utf8").split("\0");
  if (argv.at(-1) === "") argv.pop();
  const binary = await readlink(`${dir}/exe`).catch(() => argv[0] ?? "");
  const cwd = await readlink(`${dir}/cwd`).catch(() => "");
  const netns = Number((await stat(`${dir}/ns/net`)).ino);
  const flags = ["procFS"];
  if (cwd === "") flags.push("errorCWD");
  else if (cwd === "/") flags.push("rootcwd");
  cache.seed({
    pid,
    ppid,
    ktime,
    netns,
    startBoottime: ktime,
    process: {
      exec_id: execId(nodeName, ktime, pid),
      pid,
      uid,
      cwd,
      binary,
      arguments: joinArguments(argv),
      flags: flags.join(" "),
      start_time: ktimeToIso(ktime, bootNs),
      auid: Number.isSafeInteger(auid) ? auid : 4294967295,
    },
  });
}

/** Seeds the cache with every process alive now; returns how many were read. */
export async function scanProc(
  cache: ProcessCache,
  nodeName: string,
  bootNs: bigint,
  procRoot = "/proc",
): Promise<number> {
  const pids = (await readdir(procRoot))
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b)
    .slice(0, MAX_SCAN);
  let n = 0;
  for (const pid of pids) {
    try {
      await one(procRoot, pid, cache, nodeName, bootNs);
      n++;
    } catch {
      // exited meanwhile, or a kernel thread without an exe: skipped
    }
  }
  cache.linkParents();
  return n;
}
