/**
 * The node's WireGuard interface, in the node's network namespace: the
 * kernel's where the kernel has WireGuard (`ip link add type wireguard`),
 * Debian's wireguard-go (userspace, TUN) otherwise.
 *
 *   ensureWgDevice ──link there?──yes──▶ adopt it (a restarted agent changes nothing)
 *                  └─no──▶ ip link add type wireguard ──refused──▶ spawn wireguard-go -f (own session)
 *                  ──▶ wg set private-key FILE listen-port P (only when they differ) ──▶ link up
 *
 * wireguard-go outlives the agent (its own session and process group: an agent killed
 * with -9, or stopped, leaves the tunnel and its sessions up; the next agent adopts it).
 * It runs with the least privilege it can: uid 0 but a bounding set of CAP_NET_ADMIN only
 * (TUN needs it), no inheritable capabilities, no_new_privs (setpriv). Its control socket is
 * /var/run/wireguard/<ifname>.sock, shared by every namespace of the host: interface names
 * must be unique per host (wgInterfaceName).
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, openSync, readdirSync, readFileSync, statSync } from "node:fs";
import { MembraneError } from "../errors.js";
import { run, runRaw } from "../datapath/exec.js";

export type WgImpl = "kernel" | "wireguard-go";

export interface WgDeviceParams {
  /** The node's named namespace; absent = the agent's own. */
  readonly netns?: string;
  readonly ifname: string;
  readonly port: number;
  readonly privateKeyFile: string;
  readonly publicKey: string;
  /** wireguard-go's standard output and error (appended). */
  readonly logFile: string;
  /** Interface MTU (default 1420: a 1500 underlay less WireGuard's 80 bytes over IPv6). */
  readonly mtu?: number;
  /** Try the kernel module first (default true). */
  readonly preferKernel?: boolean;
}

export interface WgDevice {
  readonly impl: WgImpl;
  /** True when the interface was already there (a restart) and was kept. */
  readonly adopted: boolean;
  /** wireguard-go's process id, when this call started it. */
  readonly pid?: number;
}

/** The interface name: `membrane_wg0` in the agent's own namespace, unique per node namespace otherwise. */
export function wgInterfaceName(netns: string | undefined, node: string): string {
  if (netns === undefined) return "membrane_wg0";
  return "mwg" + createHash("sha256").update(`${netns}/${node}`).digest("hex").slice(0, 10);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function linkKind(netns: string | undefined, ifname: string): Promise<string | undefined> {
  const r = await runRaw(["ip", "-j", "-d", "link", "show", "dev", ifname], netns ? { netns } : {});
  if (r.status !== 0) return undefined;
  const l = (JSON.parse(r.stdout) as { linkinfo?: { info_kind?: string } }[])[0];
  return l?.linkinfo?.info_kind ?? "tun";
}

const wgArgv = (netns: string | undefined, args: readonly string[]): { argv: string[]; netns?: string } => ({
  argv: ["wg", ...args],
  ...(netns ? { netns } : {}),
});

async function wg(
  netns: string | undefined,
  args: readonly string[],
  what: string,
  stdin?: string,
): Promise<string> {
  const a = wgArgv(netns, args);
  return run(a.argv, {
    ...(a.netns ? { netns: a.netns } : {}),
    ...(stdin !== undefined ? { stdin } : {}),
    code: "ENCRYPTION_FAILED",
    what,
  });
}

export { wg as runWg };

/** Starts wireguard-go for `ifname` in the namespace; resolves once its interface and control socket answer. */
async function spawnWireguardGo(p: WgDeviceParams): Promise<number> {
  const root = process.getuid?.() === 0;
  const priv = root ? ["setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all", "--no-new-privs"] : [];
  const argv = [
    ...(p.netns ? ["ip", "netns", "exec", p.netns] : []),
    ...priv,
    "wireguard-go",
    "-f",
    p.ifname,
  ];
  const fd = openSync(p.logFile, "a", 0o600);
  let child;
  try {
    child = spawn(argv[0] as string, argv.slice(1), {
      stdio: ["ignore", fd, fd],
      detached: true, // its own session: outlives the agent and the agent's process group
      env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1", LOG_LEVEL: "error" },
    });
  } finally {
    closeSync(fd);
  }
  let exit: string | undefined;
  child.once("exit", (code, sig) => (exit = `exited (${code ?? sig})`));
  child.once("error", (e) => (exit = e.message));
  child.unref();
  for (let i = 0; i < 100; i++) {
    if (exit !== undefined) break;
    const r = await runRaw(
      wgArgv(p.netns, ["show", p.ifname, "listen-port"]).argv,
      p.netns ? { netns: p.netns } : {},
    );
    if (r.status === 0) return child.pid ?? 0;
    await sleep(50);
  }
  if (exit === undefined) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  let tail = "";
  try {
    tail = readFileSync(p.logFile, "utf8").split("\n").slice(-5).join("\n");
  } catch {
    /* no log */
  }
  throw new MembraneError(
    "ENCRYPTION_FAILED",
    `Cannot start wireguard-go for ${p.ifname}${p.netns ? ` in ${p.netns}` : ""}: ${exit ?? "its interface did not come up in 5 s"}${tail ? `\n${tail}` : ""}`,
    {
      hint: "install wireguard-go and wireguard-tools (scripts/install-system-deps.sh); /dev/net/tun must exist",
    },
  );
}

/** Makes the interface exist, hold the node's key and port, and be up. */
export async function ensureWgDevice(p: WgDeviceParams): Promise<WgDevice> {
  const where = p.netns ? { netns: p.netns } : {};
  let kind = await linkKind(p.netns, p.ifname);
  let adopted = kind !== undefined;
  let pid: number | undefined;
  if (kind === "tun") {
    // A TUN without its wireguard-go answering is left over: remove it and start again.
    const alive = await runRaw(wgArgv(p.netns, ["show", p.ifname, "listen-port"]).argv, where);
    if (alive.status !== 0) {
      await runRaw(["ip", "link", "del", p.ifname], where);
      kind = undefined;
      adopted = false;
    }
  }
  if (kind === undefined && p.preferKernel !== false) {
    const r = await runRaw(["ip", "link", "add", p.ifname, "type", "wireguard"], where);
    if (r.status === 0) kind = "wireguard";
  }
  if (kind === undefined) {
    pid = await spawnWireguardGo(p);
    kind = "tun";
  }
  const pub = (
    await wg(p.netns, ["show", p.ifname, "public-key"], "read the WireGuard interface's key")
  ).trim();
  const port = (await wg(p.netns, ["show", p.ifname, "listen-port"], "read the WireGuard port")).trim();
  if (pub !== p.publicKey || port !== String(p.port)) {
    await wg(
      p.netns,
      ["set", p.ifname, "listen-port", String(p.port), "private-key", p.privateKeyFile],
      `set the key and port of ${p.ifname}`,
    );
  }
  await run(["ip", "link", "set", p.ifname, "mtu", String(p.mtu ?? 1420), "up"], {
    ...where,
    code: "ENCRYPTION_FAILED",
    what: `bring ${p.ifname} up`,
  });
  return { impl: kind === "wireguard" ? "kernel" : "wireguard-go", adopted, ...(pid ? { pid } : {}) };
}

/** Removes the interface (wireguard-go exits when its TUN goes). */
export async function deleteWgDevice(netns: string | undefined, ifname: string): Promise<void> {
  await runRaw(["ip", "link", "del", ifname], netns ? { netns } : {});
}

/**
 * Stops every wireguard-go whose network namespace is one of the named namespaces starting
 * with `prefix` (labs and tests: their namespaces are going away). Returns how many.
 */
export function stopWireguardIn(prefix: string): number {
  const inodes = new Set<number>();
  let names: string[] = [];
  try {
    names = readdirSync("/run/netns");
  } catch {
    return 0;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    try {
      inodes.add(statSync(`/run/netns/${n}`).ino);
    } catch {
      /* gone meanwhile */
    }
  }
  if (inodes.size === 0) return 0;
  let stopped = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "wireguard-go") continue;
      if (!inodes.has(statSync(`/proc/${pid}/ns/net`).ino)) continue;
      process.kill(Number(pid), "SIGTERM");
      stopped++;
    } catch {
      /* exited meanwhile */
    }
  }
  return stopped;
}
