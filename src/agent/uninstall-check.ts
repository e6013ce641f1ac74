/**
 * What `membrane uninstall` checks before it changes anything: every flag is
 * well formed, the socket path is a socket, and the state directory has the
 * layout the agent writes. The result is the exact list of paths it may
 * remove, so that a mistyped `--state-dir /home/alice` or `--socket
 * /etc/passwd` is refused before the first kernel change, not half-way.
 *
 *   UninstallParams --checkUninstall--> UninstallPlan (state files, socket)
 *                                  \--> MembraneError CLI_USAGE (nothing changed)
 *
 * The agent writes into its state directory only `store/` (the embedded
 * store: store.log, store.lock, store.snap and its .tmp) — with etcd nothing
 * at all — and, with --encryption, `wireguard/` (the node's key pair, a rotation's next key,
 * wireguard-go's log) or `ipsec/` (the node's key, charon's log, its runtime directory's name).
 * Anything else in there means the directory is not (only) ours:
 * refuse and let the user look (the API socket may sit in there too). Nothing is followed through a symlink: the
 * directory itself must not be one, and entries are checked with lstat.
 */
import { lstat, readdir } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { MembraneError } from "../errors.js";
import { parsePrefix } from "../labels/cidr.js";

/** The subdirectory of the state directory the embedded store writes (run.ts). */
export const STORE_SUBDIR = "store";
/** Files of the embedded store: store.log, store.lock, store.snap, store.snap.tmp. */
const STORE_FILE_RE = /^store\.[a-z.]{1,16}$/;
/** Subdirectories the agent writes and the regular files each may hold (encryption/keys.ts, device.ts, mtls/agent.ts). */
const AGENT_SUBDIRS: ReadonlyMap<string, { re: RegExp; what: string }> = new Map([
  [
    STORE_SUBDIR,
    { re: STORE_FILE_RE, what: "the store's regular files (store.log, store.lock, store.snap)" },
  ],
  [
    "wireguard",
    {
      re: /^(private\.key|next\.key|key\.json|wireguard-go\.log)(\.tmp)?$/,
      what: "the WireGuard key files (private.key, next.key, key.json) and wireguard-go.log",
    },
  ],
  [
    "ipsec",
    {
      re: /^(node\.key(\.tmp)?|key\.json|charon\.log|run-dir)$/,
      what: "the IPsec node key (node.key, key.json), charon.log and run-dir",
    },
  ],
  [
    "mtls-tunnel",
    {
      re: /^(ca\.json|\.ca\.json\.[0-9a-f]{12})$/,
      what: "the mTLS tunnel's CA file (ca.json, spiffe/ca-file.ts)",
    },
  ],
]);
/** Names `ip netns` accepts and we pass to `ip`: no "/", no leading "-" or ".". */
const NETNS_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
/** nftables table names (identifiers) as the agent uses them. */
const TABLE_RE = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;

export interface UninstallInputs {
  readonly stateDir: string;
  readonly socketPath: string;
  /** The agent's --node-netns; absent = the current namespace. */
  readonly nodeNetns?: string;
  readonly netnsPrefix: string;
  readonly table: string;
  /** The agent's pod CIDRs: their blackhole routes and gateway addresses (first host) go. */
  readonly podCidr4?: string;
  readonly podCidr6?: string;
}

export interface UninstallPlan {
  /** The state directory, absolute; absent when it does not exist. */
  readonly stateDir?: string;
  /** Files to unlink then directories to rmdir, deepest first (all inside stateDir); after the socket. */
  readonly stateFiles: readonly string[];
  readonly stateDirs: readonly string[];
  /** The socket, absolute; absent when there is none. */
  readonly socket?: string;
}

function refuse(why: string, hint: string): MembraneError {
  return new MembraneError("CLI_USAGE", `Cannot uninstall: ${why}`, { hint });
}

function checkFlags(p: UninstallInputs): void {
  if (p.netnsPrefix.length < 3 || !NETNS_RE.test(p.netnsPrefix))
    throw refuse(
      `--netns-prefix ${JSON.stringify(p.netnsPrefix)} is not a namespace name prefix of 3 to 64 letters, digits, "_", "." or "-"`,
      "give the agent's --netns-prefix (default mbr-); a shorter prefix could remove namespaces that are not Membrane's",
    );
  if (p.nodeNetns !== undefined && (!NETNS_RE.test(p.nodeNetns) || p.nodeNetns === ".."))
    throw refuse(
      `--node-netns ${JSON.stringify(p.nodeNetns)} is not a namespace name (1 to 64 letters, digits, "_", "." or "-")`,
      "give the agent's --node-netns, as `ip netns list` shows it",
    );
  if (!TABLE_RE.test(p.table))
    throw refuse(
      `--table ${JSON.stringify(p.table)} is not an nftables table name (a letter or "_", then up to 63 letters, digits, "_" or "-")`,
      "give the agent's --table (default membrane)",
    );
  for (const [flag, cidr, family] of [
    ["--pod-cidr", p.podCidr4, 4],
    ["--pod-cidr6", p.podCidr6, 6],
  ] as const) {
    if (cidr === undefined) continue;
    const parsed = parsePrefix(cidr);
    if (parsed?.family !== family)
      throw refuse(
        `${flag} ${JSON.stringify(cidr)} is not an IPv${family} prefix`,
        `give the agent's ${flag}, e.g. ${family === 4 ? "10.200.0.0/24" : "fd00:200::/64"}`,
      );
  }
}

/** lstat, or undefined when the path does not exist. */
async function lstatOrNone(path: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  return lstat(path).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw refuse(`cannot inspect ${path}: ${(e as Error).message}`, "check the path and your permissions");
  });
}

const NOT_OURS_HINT =
  "give the directory the agent was started with (--state-dir); if it is right, move what is not Membrane's out of it, or remove it yourself";

/**
 * The socket may live in the state directory (`--state-dir /tmp/m1 --socket
 * /tmp/m1/agent.sock`), directly or in a subdirectory holding only it.
 */
async function isSocketPlace(path: string, socket: string | undefined): Promise<boolean> {
  if (socket === undefined) return false;
  if (path === socket) return true;
  return path === dirname(socket) && (await readdir(path)).every((n) => join(path, n) === socket);
}

async function planStateDir(
  dir: string,
  socket: string | undefined,
): Promise<Pick<UninstallPlan, "stateDir" | "stateFiles" | "stateDirs">> {
  const abs = resolve(dir);
  if (abs.split(sep).filter((s) => s !== "").length < 2)
    throw refuse(
      `--state-dir ${JSON.stringify(abs)} is too close to / to delete safely`,
      "give the directory the agent was started with, e.g. /var/lib/membrane",
    );
  const st = await lstatOrNone(abs);
  if (st === undefined) return { stateFiles: [], stateDirs: [] };
  if (!st.isDirectory())
    throw refuse(
      `--state-dir ${JSON.stringify(abs)} is ${st.isSymbolicLink() ? "a symbolic link" : "not a directory"}; expected the agent's state directory (holding only ${STORE_SUBDIR}/)`,
      st.isSymbolicLink() ? "give the directory the link points to, if that is the agent's" : NOT_OURS_HINT,
    );
  const files: string[] = [];
  const dirs: string[] = [];
  for (const name of (await readdir(abs)).sort()) {
    const path = join(abs, name);
    const e = await lstat(path);
    if (await isSocketPlace(path, socket)) {
      if (e.isDirectory()) dirs.push(path);
      continue;
    }
    const sub = AGENT_SUBDIRS.get(name);
    if (sub === undefined || !e.isDirectory())
      throw refuse(
        `${JSON.stringify(path)} was not written by the agent: a state directory holds only ${[...AGENT_SUBDIRS.keys()].map((k) => `${k}/`).join(" and ")}`,
        NOT_OURS_HINT,
      );
    for (const inner of (await readdir(path)).sort()) {
      const f = join(path, inner);
      if (!sub.re.test(inner) || !(await lstat(f)).isFile())
        throw refuse(
          `${JSON.stringify(f)} was not written by the agent: ${name}/ holds only ${sub.what}`,
          NOT_OURS_HINT,
        );
      files.push(f);
    }
    dirs.push(path);
  }
  dirs.push(abs);
  return { stateDir: abs, stateFiles: files, stateDirs: dirs };
}

async function planSocket(path: string): Promise<string | undefined> {
  const abs = resolve(path);
  const st = await lstatOrNone(abs);
  if (st === undefined) return undefined;
  if (!st.isSocket())
    throw refuse(
      `--socket ${JSON.stringify(abs)} is not a unix socket; expected the agent's API socket`,
      "give the agent's --socket (default /run/membrane/agent.sock)",
    );
  return abs;
}

/** Checks every input; throws CLI_USAGE (having changed nothing) or returns what may be removed. */
export async function checkUninstall(p: UninstallInputs): Promise<UninstallPlan> {
  checkFlags(p);
  const socket = await planSocket(p.socketPath);
  const state = await planStateDir(p.stateDir, socket);
  return { ...state, ...(socket !== undefined ? { socket } : {}) };
}
