/**
 * Named network namespaces (`ip netns`): create, delete, list, sysctls, and
 * cleanup of everything a run created under its name prefix.
 *
 * Deleting a namespace destroys its interfaces; a veth whose peer lives in the
 * deleted namespace goes with it, so cleanupPrefix() needs to remove
 * namespaces only. Nothing here touches the root namespace.
 */
import { readdir } from "node:fs/promises";
import { MembraneError } from "../errors.js";
import { ip, run, runRaw } from "./exec.js";
import { closeNetnsHelper } from "./netns-helper.js";
import { closeNativeNetns } from "./netns-native.js";
import { closeNodeLinks } from "./node-links.js";
import { inNetns } from "./rtnl.js";

/** Names of the existing named network namespaces. */
export async function listNetns(): Promise<string[]> {
  // The bind mounts `ip netns add` makes; read without a process.
  try {
    return (await readdir("/run/netns")).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new MembraneError("NETNS_FAILED", `Cannot list network namespaces in /run/netns: ${String(e)}`, {
      cause: e,
    });
  }
}

export async function netnsExists(name: string): Promise<boolean> {
  return (await listNetns()).includes(name);
}

/** Creates a namespace (no-op when it exists) with loopback up. */
export async function createNetns(name: string): Promise<void> {
  if (!(await netnsExists(name))) await ip(["netns", "add", name]);
  await ip(["link", "set", "lo", "up"], name);
}

/** Deletes a namespace; no-op when it does not exist. */
export async function deleteNetns(name: string): Promise<void> {
  closeNodeLinks((ns) => ns === name); // a process inside would keep it alive
  if (await netnsExists(name)) await ip(["netns", "del", name]);
}

/**
 * Sets sysctls inside a namespace (absent = the current one), e.g.
 * {"net.ipv4.ip_forward": "1"}; one process for all.
 */
export async function setSysctls(netns: string | undefined, values: Record<string, string>): Promise<void> {
  const script = Object.entries(values)
    .map(([k, v]) => {
      if (!/^[a-z0-9_.-]+$/i.test(k) || !/^[0-9a-z -]*$/i.test(v))
        throw new MembraneError(
          "NETNS_FAILED",
          `Cannot set sysctl ${k}=${v} in ${netns ?? "the current namespace"}: not a plain key/value`,
        );
      return `echo '${v}' > /proc/sys/${k.replace(/\./g, "/")}`;
    })
    .join(" && ");
  await run([...inNetns(netns), "sh", "-c", script], {
    what: `set sysctls in ${netns ?? "the current namespace"}`,
  });
}

/** Removes every namespace whose name starts with `prefix` (test teardown). Returns the names removed. */
export async function cleanupPrefix(prefix: string): Promise<string[]> {
  if (prefix.length < 3) {
    throw new MembraneError("NETNS_FAILED", `Cannot clean up prefix "${prefix}": too short to be safe`, {
      hint: "Use the unique per-run prefix, e.g. mbr1234a-.",
    });
  }
  closeNodeLinks((ns) => ns.startsWith(prefix));
  // The namespace helpers are shared by the process and started again by the next request; let them
  // go here, so a finished run (a test, the demo, policy test) is not kept alive by an idle helper
  // (seen in CI under load: an idle membrane-netns whose stdout and stderr stayed referenced).
  closeNativeNetns();
  closeNetnsHelper();
  const gone: string[] = [];
  for (const name of await listNetns()) {
    if (!name.startsWith(prefix)) continue;
    // Best effort: one failure must not leave the rest behind.
    const r = await runRaw(["ip", "netns", "del", name]);
    if (r.status === 0) gone.push(name);
  }
  return gone;
}
