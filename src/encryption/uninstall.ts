/**
 * What `membrane uninstall` removes of transparent encryption in the node's namespace (the agent
 * leaves it all on stop, on purpose: the kernel keeps encrypting and strict mode keeps dropping):
 *
 *   WireGuard interfaces named as the agent names them (device.ts: membrane_wg0, mwg<10 hex>;
 *   wireguard-go exits when its TUN goes) -> charon (SIGTERM: it deletes its SAs, its TUN and its
 *   routes) and its runtime directory -> table inet membrane_encrypt (strict.ts), last, so that
 *   nothing leaves in clear while a tunnel is still going -> the node-to-node rule and table 2110
 *   (node-routes.ts)
 *
 * What is not there is not an error (a second run removes nothing); each thing removed is one line.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runRaw } from "../datapath/exec.js";
import { removeRunDir, RUN_ROOT, stopCharon } from "./ipsec/charon.js";
import { removeNodeRouting } from "./node-routes.js";
import { ENCRYPT_TABLE } from "./strict.js";

/** The names wgInterfaceName() gives (device.ts): nothing else is touched. */
const OUR_WG_NAME = /^(membrane_wg0|mwg[0-9a-f]{10})$/;

/** Removes the encryption state of the namespace (`netns`; absent = the current one); one line per thing removed. */
export async function uninstallEncryption(
  netns: string | undefined,
  where: string,
  stateDir: string,
): Promise<string[]> {
  const at = netns !== undefined ? { netns } : {};
  const removed: string[] = [];
  const links = await runRaw(["ip", "-j", "link", "show"], at);
  const names =
    links.status === 0
      ? (JSON.parse(links.stdout || "[]") as { ifname?: string }[]).map((l) => l.ifname ?? "")
      : [];
  for (const name of names.filter((n) => OUR_WG_NAME.test(n)))
    if ((await runRaw(["ip", "link", "del", name], at)).status === 0)
      removed.push(`WireGuard interface ${name} (${where})`);
  let runDir: string | undefined;
  try {
    runDir = readFileSync(join(stateDir, "ipsec", "run-dir"), "utf8").trim();
  } catch {
    // IPsec never ran here
  }
  if (runDir !== undefined && runDir.startsWith(RUN_ROOT + "/") && !runDir.includes("..")) {
    const n = stopCharon(runDir);
    if (n > 0) removed.push(`charon (${n} process${n > 1 ? "es" : ""}, ${where})`);
    removeRunDir(runDir);
    removed.push(`charon runtime directory ${runDir}`);
  }
  if ((await runRaw(["nft", "delete", "table", "inet", ENCRYPT_TABLE], at)).status === 0)
    removed.push(`nftables table inet ${ENCRYPT_TABLE} (${where})`);
  if (await removeNodeRouting(netns)) removed.push(`node-to-node routing rule and table 2110 (${where})`);
  return removed;
}
