/**
 * What `membrane uninstall` removes of transparent encryption in the node's namespace (the agent
 * leaves it all on stop, on purpose: the kernel keeps encrypting and strict mode keeps dropping):
 *
 *   WireGuard interfaces named as the agent names them (device.ts: membrane_wg0, mwg<10 hex>;
 *   wireguard-go exits when its TUN goes) -> table inet membrane_encrypt (strict.ts) ->
 *   the node-to-node rule and table 2110 (node-routes.ts)
 *
 * What is not there is not an error (a second run removes nothing).
 */
import { runRaw } from "../datapath/exec.js";
import { removeNodeRouting } from "./node-routes.js";
import { ENCRYPT_TABLE } from "./strict.js";

/** The names wgInterfaceName() gives (device.ts): nothing else is touched. */
const OUR_WG_NAME = /^(membrane_wg0|mwg[0-9a-f]{10})$/;

/** Removes the encryption state of the namespace (`netns`; absent = the current one); one line per thing removed. */
export async function uninstallEncryption(netns: string | undefined, where: string): Promise<string[]> {
  const at = netns !== undefined ? { netns } : {};
  const removed: string[] = [];
  const links = await runRaw(["ip", "-j", "link", "show"], at);
  const names =
    links.status === 0 ? (JSON.parse(links.stdout) as { ifname?: string }[]).map((l) => l.ifname ?? "") : [];
  for (const name of names.filter((n) => OUR_WG_NAME.test(n)))
    if ((await runRaw(["ip", "link", "del", name], at)).status === 0)
      removed.push(`WireGuard interface ${name} (${where})`);
  if ((await runRaw(["nft", "delete", "table", "inet", ENCRYPT_TABLE], at)).status === 0)
    removed.push(`nftables table inet ${ENCRYPT_TABLE} (${where})`);
  if (await removeNodeRouting(netns)) removed.push(`node-to-node routing rule and table 2110 (${where})`);
  return removed;
}
