/**
 * A cgroup v2 directory per endpoint, where the runtime enforcer attaches
 * cgroup connect4/connect6 programs (connect hooks of TracingPolicies).
 *
 *   <cgroup2 mount>/membrane/<netns name>      one per endpoint made by Membrane (named netns)
 *     membrane endpoint exec: the launcher writes its pid to cgroup.procs before it execs the command
 *
 * The cgroup2 mount is found in /proc/self/mountinfo (here the host is hybrid:
 * /sys/fs/cgroup/unified; a pure v2 host has /sys/fs/cgroup). Only cgroup
 * membership is used (no controllers are enabled), so the directory changes
 * no resource limit. A process that enters the namespace by other means (`ip
 * netns exec`, nsenter) is not in the cgroup and not covered; a container
 * attached through CNI (podman) runs in its runtime's cgroup and gets none
 * from us (its netns is a path, not a name). Directories whose namespace is
 * gone are removed by sweepEndpointCgroups (only when empty: rmdir).
 */
import { mkdirSync, readdirSync, readFileSync, rmdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { isNetnsName } from "./rtnl.js";

const PARENT = "membrane";

/** The cgroup2 mount point, or undefined when the host has none. */
export function cgroup2Root(mountinfo = "/proc/self/mountinfo"): string | undefined {
  let text: string;
  try {
    text = readFileSync(mountinfo, "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    const [pre, post] = line.split(" - ");
    if (post?.split(" ")[0] === "cgroup2") return pre?.split(" ")[4]?.replace(/\\040/g, " ");
  }
  return undefined;
}

/** The endpoint's cgroup directory (not created), or undefined when it cannot have one. */
export function endpointCgroupPath(netns: string, root = cgroup2Root()): string | undefined {
  if (root === undefined || !isNetnsName(netns)) return undefined;
  return join(root, PARENT, netns);
}

/** Creates the endpoint's cgroup if missing; undefined when it cannot have one. */
export function ensureEndpointCgroup(netns: string, root = cgroup2Root()): string | undefined {
  const dir = endpointCgroupPath(netns, root);
  if (dir === undefined) return undefined;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    return dir;
  } catch {
    return undefined;
  }
}

/** Removes the cgroups of namespaces that no longer exist; busy ones (processes left) stay. */
export function sweepEndpointCgroups(root = cgroup2Root(), netnsDir = "/run/netns"): number {
  if (root === undefined) return 0;
  let names: string[];
  try {
    names = readdirSync(join(root, PARENT));
  } catch {
    return 0;
  }
  let removed = 0;
  for (const n of names) {
    if (!isNetnsName(n) || existsSync(join(netnsDir, n))) continue;
    try {
      rmdirSync(join(root, PARENT, n));
      removed++;
    } catch {
      // processes still inside, or a child cgroup: left for the next sweep
    }
  }
  return removed;
}
