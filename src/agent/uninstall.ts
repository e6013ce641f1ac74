/**
 * `membrane uninstall`: removes what a stopped agent leaves on the node.
 *
 *   every flag, the socket and the state directory's layout checked
 *   (uninstall-check.ts) ──bad──> refuse, nothing changed
 *        | ok
 *   agent answers on the socket? ──yes──> refuse (stop it first)
 *        | no
 *   node namespace (its own, or --node-netns): table inet <table>, pod CIDR
 *   blackhole routes, gateway addresses on lo, WireGuard interface, table
 *   inet membrane_encrypt, node-to-node routing  ->  endpoint namespaces
 *   <prefix>*  ->  socket  ->  the state directory's files (only those the
 *   agent writes)  ->  the socket's directory when empty
 *
 * Stopping the agent leaves enforcement in place on purpose; this is the way
 * to take it away. Each step reports what it removed; what was not there is
 * not an error (running it twice removes nothing the second time).
 */
import { readFileSync } from "node:fs";
import { readdir, rmdir, stat, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { runRaw } from "../datapath/exec.js";
import { cleanupPrefix, deleteNetns, netnsExists } from "../datapath/netns.js";
import { MembraneError } from "../errors.js";
import { addrString, parsePrefix } from "../labels/cidr.js";
import { LOCK_FILE, lockIsLive } from "../store/lock.js";
import { AgentClient } from "./client.js";
import { checkUninstall, type UninstallInputs } from "./uninstall-check.js";
import { uninstallEncryption } from "../encryption/uninstall.js";

/** What uninstall removes: the agent's own options (checked whole first, uninstall-check.ts). */
export type UninstallParams = UninstallInputs;

export interface UninstallReport {
  /** One line per thing removed, e.g. `nftables table inet membrane (current namespace)`. */
  readonly removed: string[];
}

function ignoreGone(e: unknown): void {
  if ((e as NodeJS.ErrnoException).code !== "ENOENT")
    throw new MembraneError("CLI_USAGE", `Cannot uninstall: ${(e as Error).message}`, {
      hint: "something changed in the state directory while uninstalling; look at it and run again",
      cause: e,
    });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Does an agent answer on the socket (or hold the state directory's lock)? */
async function agentAlive(p: UninstallParams): Promise<string | undefined> {
  if (await exists(p.socketPath)) {
    const answered = await new AgentClient({ socketPath: p.socketPath, timeoutMs: 5000 })
      .request("GET", "/v1/status")
      .then(
        () => true,
        (e: unknown) => !(e instanceof MembraneError && e.code === "AGENT_UNREACHABLE"),
      );
    if (answered) return `an agent answers on ${p.socketPath}`;
  }
  try {
    if (lockIsLive(readFileSync(join(p.stateDir, "store", LOCK_FILE), "utf8")))
      return `a running agent holds ${join(p.stateDir, "store", LOCK_FILE)}`;
  } catch {
    // no lock file: no agent on this directory
  }
  return undefined;
}

/** `10.200.0.0/24` -> `10.200.0.1/32`: the node's side of the pod routes (as ipam.ts). */
function gatewayOf(cidr: string | undefined): string | undefined {
  const p = cidr === undefined ? undefined : parsePrefix(cidr);
  if (!p) return undefined;
  return `${addrString(p.family, p.addr + 1n)}/${p.family === 4 ? 32 : 128}`;
}

/** Runs `ip`/`nft` argv in the node namespace; true when it succeeded. */
async function inNode(p: UninstallParams, argv: readonly string[]): Promise<boolean> {
  const r = await runRaw(argv, p.nodeNetns !== undefined ? { netns: p.nodeNetns } : {});
  return r.status === 0;
}

export async function uninstall(p: UninstallParams): Promise<UninstallReport> {
  // Every input first: a refused uninstall changes nothing (uninstall-check.ts).
  const plan = await checkUninstall(p);
  const busy = await agentAlive(p);
  if (busy !== undefined) {
    throw new MembraneError("AGENT_ALREADY_RUNNING", `Cannot uninstall: ${busy}`, {
      hint: "stop the agent first (Ctrl-C or kill its process), then run `membrane uninstall` again",
    });
  }
  const removed: string[] = [];
  const where = p.nodeNetns === undefined ? "current namespace" : `netns ${p.nodeNetns}`;
  const nodeThere = p.nodeNetns === undefined || (await netnsExists(p.nodeNetns));
  if (nodeThere) {
    if (await inNode(p, ["nft", "delete", "table", "inet", p.table]))
      removed.push(`nftables table inet ${p.table} (${where})`);
    // The services' table (controllers/lb.ts), when services were ever applied.
    if (await inNode(p, ["nft", "delete", "table", "inet", `${p.table}_lb`]))
      removed.push(`nftables table inet ${p.table}_lb (${where})`);
    for (const [fam, cidr] of [
      ["-4", p.podCidr4],
      ["-6", p.podCidr6],
    ] as const) {
      if (cidr !== undefined && (await inNode(p, ["ip", fam, "route", "del", "blackhole", cidr])))
        removed.push(`route blackhole ${cidr} (${where})`);
    }
    for (const [fam, addr] of [
      ["-4", gatewayOf(p.podCidr4)],
      ["-6", gatewayOf(p.podCidr6)],
    ] as const) {
      if (addr && (await inNode(p, ["ip", fam, "addr", "del", addr, "dev", "lo"])))
        removed.push(`address ${addr} on lo (${where})`);
    }
    // --encryption: the tunnels, charon, strict mode's table and node-to-node routing (encryption/uninstall.ts).
    removed.push(...(await uninstallEncryption(p.nodeNetns, where, p.stateDir)));
  }
  // Endpoint namespaces take their veth pairs (and so their routes) with them.
  for (const ns of await cleanupPrefix(p.netnsPrefix)) removed.push(`network namespace ${ns}`);
  if (p.nodeNetns !== undefined && nodeThere && !p.nodeNetns.startsWith(p.netnsPrefix)) {
    await deleteNetns(p.nodeNetns);
    removed.push(`network namespace ${p.nodeNetns}`);
  }
  const socket = plan.socket;
  if (
    socket !== undefined &&
    (await unlink(socket).then(
      () => true,
      () => false,
    ))
  )
    removed.push(`socket ${socket}`);
  if (plan.stateDir !== undefined) {
    // Only what the check found, and never through a symlink: unlink and
    // rmdir act on the entry itself (rmdir fails on what appeared since).
    for (const f of plan.stateFiles) await unlink(f).catch(ignoreGone);
    for (const d of plan.stateDirs) await rmdir(d).catch(ignoreGone);
    removed.push(`state directory ${plan.stateDir}`);
  }
  // The socket's directory only when nothing else is in it (it may be /tmp).
  const socketDir = dirname(resolve(p.socketPath));
  if ((await readdir(socketDir).catch(() => ["?"])).length === 0 && socketDir !== plan.stateDir) {
    await rmdir(socketDir);
    removed.push(`socket directory ${socketDir}`);
  }
  return { removed };
}
