/**
 * What `membrane uninstall` removes of encryption in the node's namespace (the agent stopped):
 * the strict table, the WireGuard interface (wireguard-go exits with it), and charon (SIGTERM:
 * it deletes its SAs, its TUN and its routes) with its runtime directory. Whatever is not there
 * is skipped; each thing removed is one line of the report.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runRaw } from "../datapath/exec.js";
import { ENCRYPT_TABLE } from "./strict.js";
import { removeRunDir, RUN_ROOT, stopCharon } from "./ipsec/charon.js";

export async function removeEncryption(netns: string | undefined, stateDir: string): Promise<string[]> {
  const where = netns === undefined ? "current namespace" : `netns ${netns}`;
  const opt = netns !== undefined ? { netns } : {};
  const removed: string[] = [];
  if ((await runRaw(["nft", "delete", "table", "inet", ENCRYPT_TABLE], opt)).status === 0)
    removed.push(`nftables table inet ${ENCRYPT_TABLE} (${where})`);
  const links = await runRaw(["ip", "-j", "link", "show"], opt);
  if (links.status === 0)
    for (const l of JSON.parse(links.stdout || "[]") as { ifname?: string }[]) {
      const n = l.ifname ?? "";
      if (
        (n === "membrane_wg0" || /^mwg[0-9a-f]{10}$/.test(n)) &&
        (await runRaw(["ip", "link", "del", n], opt)).status === 0
      )
        // prettier-ignore
        removed.push(`WireGuard interface ${n} (${where})`);
    }
  let runDir: string | undefined;
  try {
    runDir = readFileSync(join(stateDir, "ipsec", "run-dir"), "utf8").trim();
  } catch {
    /* IPsec never ran here */
  }
  if (runDir !== undefined && runDir.startsWith(RUN_ROOT + "/") && !runDir.includes("..")) {
    const n = stopCharon(runDir);
    if (n > 0) removed.push(`charon (${n} process${n > 1 ? "es" : ""}, ${where})`);
    removeRunDir(runDir);
    removed.push(`charon runtime directory ${runDir}`);
  }
  return removed;
}
