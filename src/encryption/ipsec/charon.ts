/**
 * strongSwan's IKE daemon for one node: charon (Debian's charon-systemd, run without systemd) in
 * the node's network namespace, ESP in userspace through its kernel-libipsec plugin (a TUN device,
 * `ipsec0`, and ESP in UDP) wherever the kernel lacks ESP, as here.
 *
 *   ensureCharon ──VICI answers?──yes──▶ adopt it (a restarted agent changes nothing)
 *                └─no──▶ write strongswan.conf ──▶ spawn (own session, as nobody, CAP_NET_ADMIN only)
 *                ──▶ wait for VICI ──▶ ViciClient
 *
 * Least privilege: charon starts as `nobody` through setpriv with CAP_NET_ADMIN as its only
 * capability (inheritable + ambient + bounding), no_new_privs. It needs that one capability for
 * the TUN device and its routes; IKE uses unprivileged ports (`port`, `port`+1 for ESP in UDP),
 * so it needs no CAP_NET_BIND_SERVICE. Its runtime directory (configuration, VICI socket) is
 * /run/membrane-ipsec/<id>/, owned by nobody and closed to others, because the agent's state
 * directory is 0700 root; its log goes to <state-dir>/ipsec/charon.log through an inherited fd.
 * Nothing of this machine's /etc is read: STRONGSWAN_CONF names our file, plugins are listed.
 *
 * charon outlives the agent (its own session: an agent killed with -9 leaves the SAs up and
 * rekeying; the next agent adopts it through VICI).
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"; // prettier-ignore
import { join } from "node:path";
import { MembraneError } from "../../errors.js";
import { ViciClient } from "./vici-client.js";

export const IPSEC_TUN = "ipsec0";
export const RUN_ROOT = "/run/membrane-ipsec";
const NOBODY = 65534;
const PLUGINS =
  "random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints kdf hmac sha2 aes gcm kernel-libipsec kernel-netlink socket-default vici";

export interface CharonParams {
  readonly netns?: string;
  readonly node: string;
  readonly stateDir: string;
  /** IKE's UDP port; ESP in UDP uses port + 1. */
  readonly port: number;
  /** strongSwan's timers, seconds (tests shorten them): DPD and retransmits. */
  readonly logLevel?: number;
}

export interface Charon {
  readonly vici: ViciClient;
  readonly adopted: boolean;
  readonly runDir: string;
  readonly pid?: number;
}

/** The runtime directory of a node's charon (unique per host: namespace, node, state dir). */
export function charonRunDir(netns: string | undefined, node: string, stateDir: string): string {
  const id = createHash("sha256")
    .update(`${netns ?? ""}/${node}/${stateDir}`)
    .digest("hex")
    .slice(0, 12);
  return join(RUN_ROOT, id);
}

export function strongswanConf(runDir: string, port: number, logLevel = 1): string {
  return [
    "charon-systemd {",
    `  load = ${PLUGINS}`,
    `  port = ${port}`,
    `  port_nat_t = ${port + 1}`,
    "  install_routes = no", // the agent routes peers' pod CIDRs into ipsec0 (cluster/routing.ts)
    "  install_virtual_ip = no",
    "  retransmit_tries = 3",
    "  retransmit_timeout = 1.0",
    "  retransmit_base = 1.4",
    "  close_ike_on_child_failure = yes",
    "  journal { default = -1 }",
    `  filelog { stderr { default = ${logLevel}\n      time_format = %F %T } }`,
    `  plugins { vici { socket = unix://${join(runDir, "charon.vici")} } }`,
    "}",
    "",
  ].join("\n");
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function answers(vici: ViciClient): Promise<boolean> {
  try {
    await vici.request("version");
    return true;
  } catch {
    vici.close();
    return false;
  }
}

/**
 * charon runs as nobody with CAP_NET_ADMIN alone, and its kernel-libipsec opens /dev/net/tun: without
 * access it starts, loads no IPsec backend and never installs an SA (fail closed, but silently). So
 * the node must be open to nobody, as udev's default rule makes it (0666; opening it grants nothing
 * alone: creating or attaching a TUN device needs CAP_NET_ADMIN). Throws naming the fix otherwise.
 */
export function checkTunForCharon(path = "/dev/net/tun"): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new MembraneError("ENCRYPTION_FAILED", `Cannot start charon: ${path} does not exist`, {
      hint: "IPsec here runs in userspace (kernel-libipsec) on a TUN device: load the tun module",
    });
  }
  const m = st.mode & 0o777;
  const open = (m & 0o006) === 0o006 || (st.uid === NOBODY && (m & 0o600) === 0o600) || (st.gid === NOBODY && (m & 0o060) === 0o060); // prettier-ignore
  if (!open)
    throw new MembraneError(
      "ENCRYPTION_FAILED",
      `Cannot start charon: it runs as nobody and ${path} (mode ${m.toString(8).padStart(4, "0")}, uid ${st.uid}) does not let it open the device`,
      { hint: `chmod 0666 ${path}, as udev's default rule sets it (scripts/install-system-deps.sh does it on machines without udev)` }, // prettier-ignore
    );
}

/** Makes a charon run for this node and answer VICI. */
export async function ensureCharon(p: CharonParams): Promise<Charon> {
  const runDir = charonRunDir(p.netns, p.node, p.stateDir);
  const vici = new ViciClient(join(runDir, "charon.vici"), 15_000);
  if (await answers(vici)) return { vici, adopted: true, runDir };
  stopCharon(runDir); // a charon that does not answer is stuck: replace it
  mkdirSync(RUN_ROOT, { recursive: true, mode: 0o755 });
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { mode: 0o700 });
  const root = process.getuid?.() === 0;
  if (root) checkTunForCharon();
  if (root) chownSync(runDir, NOBODY, NOBODY);
  const conf = join(runDir, "strongswan.conf");
  writeFileSync(conf, strongswanConf(runDir, p.port, p.logLevel), { mode: 0o600 });
  if (root) chownSync(conf, NOBODY, NOBODY);
  const logDir = join(p.stateDir, "ipsec");
  mkdirSync(logDir, { recursive: true, mode: 0o700 });
  chmodSync(logDir, 0o700);
  const priv = root
    ? ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin", "--no-new-privs"] // prettier-ignore
    : [];
  const argv = [...(p.netns ? ["ip", "netns", "exec", p.netns] : []), ...priv, "/usr/sbin/charon-systemd"];
  const logFile = join(logDir, "charon.log");
  const fd = openSync(logFile, "a", 0o600);
  let child;
  try {
    child = spawn(argv[0] as string, argv.slice(1), {
      stdio: ["ignore", fd, fd],
      detached: true, // its own session: outlives the agent
      env: { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin", STRONGSWAN_CONF: conf },
    });
  } finally {
    closeSync(fd);
  }
  let exit: string | undefined;
  child.once("exit", (code, sig) => (exit = `exited (${code ?? sig})`));
  child.once("error", (e) => (exit = e.message));
  child.unref();
  for (let i = 0; i < 150 && exit === undefined; i++) {
    await sleep(100);
    if (await answers(vici)) {
      writeFileSync(join(runDir, "pid"), String(child.pid ?? 0));
      writeFileSync(join(logDir, "run-dir"), runDir + "\n", { mode: 0o600 }); // what uninstall stops
      return { vici, adopted: false, runDir, ...(child.pid ? { pid: child.pid } : {}) };
    }
  }
  try {
    if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
  } catch {
    /* gone */
  }
  let tail = "";
  try {
    tail = readFileSync(logFile, "utf8").split("\n").slice(-6).join("\n");
  } catch {
    /* no log */
  }
  throw new MembraneError(
    "ENCRYPTION_FAILED",
    `Cannot start charon for ${p.node}${p.netns ? ` in ${p.netns}` : ""}: ${exit ?? "its VICI socket did not answer in 15 s"}${tail ? `\n${tail}` : ""}`,
    {
      hint: "install charon-systemd, strongswan-swanctl, libcharon-extra-plugins and libstrongswan-standard-plugins (scripts/install-system-deps.sh); /dev/net/tun must exist",
    },
  );
}

/** Pids of charon-systemd processes whose STRONGSWAN_CONF is in `runDir`. */
function charonPids(match: (conf: string) => boolean): number[] {
  const out: number[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "charon-systemd") continue;
      const env = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
      const conf = env.find((e) => e.startsWith("STRONGSWAN_CONF="))?.slice("STRONGSWAN_CONF=".length);
      if (conf !== undefined && match(conf)) out.push(Number(pid));
    } catch {
      /* exited meanwhile, or not ours to read */
    }
  }
  return out;
}

/** Stops the charon of `runDir` (SIGTERM: it deletes its SAs and its TUN). Returns how many. */
export function stopCharon(runDir: string): number {
  const pids = charonPids((c) => c === join(runDir, "strongswan.conf"));
  for (const pid of pids) process.kill(pid, "SIGTERM");
  return pids.length;
}

/** Stops every charon of ours running in a named namespace starting with `prefix` (labs, tests). */
export function stopCharonIn(prefix: string): number {
  const inodes = new Set<number>();
  try {
    for (const n of readdirSync("/run/netns"))
      if (n.startsWith(prefix)) inodes.add(statSync(`/run/netns/${n}`).ino);
  } catch {
    return 0;
  }
  const pids = charonPids((c) => c.startsWith(RUN_ROOT + "/")).filter((pid) => {
    try {
      return inodes.has(statSync(`/proc/${pid}/ns/net`).ino);
    } catch {
      return false;
    }
  });
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  return pids.length;
}

/** Removes a stopped charon's runtime directory (uninstall). */
export function removeRunDir(runDir: string): void {
  rmSync(runDir, { recursive: true, force: true });
}
