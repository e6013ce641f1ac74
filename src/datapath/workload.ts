/**
 * Workloads: the processes that run inside an endpoint's network namespace.
 *
 *   launch (default)                                       launch --privileged
 *     ip netns exec <netns>            new mount namespace     ip netns exec <netns> CMD...
 *       sh: sysctls (ports < 1024, ping for all groups),         (root, every capability)
 *           mount --make-rprivate /,
 *           read-only empty tmpfs over each hidden directory
 *           environment reset (TERM, locale, TZ kept; PATH, HOME, USER, LOGNAME set)
 *       exec setpriv --reuid U --regid G --clear-groups
 *            --inh-caps -all --ambient-caps -all --bounding-set -all --no-new-privs
 *       exec CMD...                    uid U, no capability, cannot see the agent's socket or state
 *
 *   stop: ip netns pids <netns> --SIGTERM--> grace --SIGKILL--> none left; returns how many
 *
 * Every step above is an exec, so the process the caller spawns *is* the
 * workload: signals sent to it reach the command itself. The isolation is done
 * by well-kept tools (iproute2, util-linux mount and setpriv) rather than our
 * own launcher; the shell glue takes every path and id as a positional
 * argument, never as script text.
 */
import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants as fsConstants, existsSync, realpathSync, statSync } from "node:fs";
import { readdir, readlink, stat } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { delimiter, dirname, join, resolve, sep } from "node:path";
import { MembraneError } from "../errors.js";

/** Who a workload runs as, resolved to numbers. */
export interface WorkloadUser {
  readonly uid: number;
  readonly gid: number;
  /** The passwd name, or the uid as text when it has no entry. */
  readonly name: string;
  /** The passwd home directory, or "/". */
  readonly home: string;
  /** What the user asked for, for messages (e.g. "nobody"). */
  readonly spec: string;
}

export type WorkloadIsolation =
  | { readonly privileged: true }
  | {
      readonly privileged?: false;
      readonly user: WorkloadUser;
      /** Absolute, existing directories to cover with an empty read-only tmpfs. */
      readonly hide: readonly string[];
    };

/**
 * By default each endpoint's workloads run as a uid and gid of their own,
 * WORKLOAD_ID_BASE + the endpoint's id. A uid shared between endpoints (say
 * `nobody`) would let a workload ptrace one in another endpoint (this kernel
 * has no Yama) and send traffic with that endpoint's identity, or signal it;
 * the kernel refuses ptrace and signals across different uids and gids.
 * 0x70000000.. lies in a range systemd leaves unused (systemd.io/UIDS-GIDS:
 * containers end at 1879048191); an id that has a passwd or group entry is refused.
 */
export const WORKLOAD_ID_BASE = 0x70000000;
const MAX_ENDPOINT_ID = 0xffffff;

/** The uid and gid of an endpoint's workloads when --user is not given. */
export function endpointWorkloadUser(ep: { readonly id: number; readonly name: string }): WorkloadUser {
  if (!Number.isInteger(ep.id) || ep.id < 0 || ep.id > MAX_ENDPOINT_ID) {
    throw new MembraneError(
      "WORKLOAD_ISOLATION_FAILED",
      `Cannot pick a uid for the workloads of endpoint ${ep.name}: its id ${ep.id} is outside 0-${MAX_ENDPOINT_ID}`,
      { hint: "Name a user with --user USER[:GROUP]." },
    );
  }
  const id = WORKLOAD_ID_BASE + ep.id;
  const owner = getent("passwd", String(id))?.[0] ?? getent("group", String(id))?.[0];
  if (owner !== undefined) {
    throw new MembraneError(
      "WORKLOAD_ISOLATION_FAILED",
      `Cannot run the workload of endpoint ${ep.name} as uid/gid ${id}: it belongs to "${owner}" on this host`,
      { hint: "Name a user with --user USER[:GROUP] (one no other endpoint uses)." },
    );
  }
  return { uid: id, gid: id, name: String(id), home: "/", spec: `${id}:${id}` };
}

/** Signals `membrane endpoint exec` passes on to its workload. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];

const NAME = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}$/;

/** Resolves `USER[:GROUP]` (names or numbers) with getent; the group defaults to the user's primary group. */
export function resolveWorkloadUser(spec: string): WorkloadUser {
  const [user = "", group, ...rest] = spec.split(":");
  const bad = (why: string): MembraneError =>
    new MembraneError("CLI_USAGE", `Cannot run the workload as "${spec}": ${why}`, {
      location: { path: "--user" },
      hint: "Write --user USER[:GROUP] with names or numeric ids, e.g. --user nobody or --user 1000:1000.",
    });
  if (rest.length > 0 || !NAME.test(user) || (group !== undefined && !NAME.test(group)))
    throw bad("not USER[:GROUP]");
  const pw = getent("passwd", user);
  let uid: number;
  if (pw) uid = Number(pw[2]);
  else if (/^\d+$/.test(user)) uid = Number(user);
  else throw bad(`there is no user "${user}"`);
  let gid: number;
  if (group !== undefined) {
    const gr = getent("group", group);
    if (gr) gid = Number(gr[2]);
    else if (/^\d+$/.test(group)) gid = Number(group);
    else throw bad(`there is no group "${group}"`);
  } else if (pw) {
    gid = Number(pw[3]);
  } else {
    throw bad(`uid ${uid} has no passwd entry, so it has no primary group; name one (${user}:GROUP)`);
  }
  if (!isId(uid) || !isId(gid)) throw bad("ids must be 0..4294967294");
  return { uid, gid, name: pw?.[0] ?? String(uid), home: pw?.[5] || "/", spec };
}

function isId(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n < 4294967295;
}

/** One `getent DB KEY` entry split on ":", or undefined when there is none. */
function getent(db: "passwd" | "group", key: string): string[] | undefined {
  const r = spawnSync("getent", [db, key], { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0) return undefined;
  const line = r.stdout.split("\n")[0] ?? "";
  const f = line.split(":");
  return f.length >= 3 ? f : undefined;
}

/**
 * Directories a workload must not see: the agent's socket directory, its state
 * directory, and Membrane's default places (/run/membrane, /var/lib/membrane,
 * /etc/membrane, which holds TLS secrets). Resolves symlinks, drops those that
 * do not exist and those inside another hidden one. Refuses a directory whose
 * hiding would blank a system tree (/, /tmp, /var/lib...): fail closed.
 */
export function hiddenDirectories(socketPath: string, stateDir?: string): string[] {
  const wanted = [dirname(resolve(socketPath)), "/run/membrane", "/var/lib/membrane", "/etc/membrane"];
  if (stateDir !== undefined && stateDir !== "") wanted.push(resolve(stateDir));
  const real = new Set<string>();
  for (const d of wanted) {
    let r: string;
    try {
      r = realpathSync(d);
      if (!statSync(r).isDirectory()) continue;
    } catch {
      continue; // nothing there to hide
    }
    if (isSystemDirectory(r)) {
      throw new MembraneError(
        "WORKLOAD_ISOLATION_FAILED",
        `Cannot hide ${d === r ? r : `${d} (${r})`} from the workload: it is a system directory, and covering it would break the workload`,
        {
          hint: "Give the agent a socket and state directory of their own (e.g. --socket /run/membrane/agent.sock), or run the command with --privileged.",
        },
      );
    }
    real.add(r);
  }
  const sorted = [...real].sort((a, b) => a.length - b.length);
  return sorted.filter((d, i) => !sorted.slice(0, i).some((p) => d.startsWith(p + sep)));
}

const SYSTEM_DIRECTORIES = new Set([
  "/var/lib",
  "/var/run",
  "/var/tmp",
  "/var/cache",
  "/usr/local",
  "/usr/lib",
]);

function isSystemDirectory(dir: string): boolean {
  const depth = dir.split(sep).filter((s) => s !== "").length;
  return depth < 2 || SYSTEM_DIRECTORIES.has(dir);
}

/**
 * Mount and drop privileges, then exec the command ("$@"). Positional
 * arguments: the workload's uid, gid, the number N of directories to hide,
 * the N directories, then the command.
 */
const LAUNCH_SCRIPT = [
  "set -e",
  // As in Kubernetes pods: an unprivileged workload may bind ports < 1024 and open ICMP echo sockets,
  // in its own netns only. (A ping binary that needs file capabilities still cannot start: the bounding set is empty.)
  "echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start",
  'echo "0 2147483647" > /proc/sys/net/ipv4/ping_group_range',
  // `ip netns exec` made a mount namespace (slave of the host's); cut propagation both ways.
  "mount --make-rprivate /",
  "uid=$1; gid=$2; path=$3; n=$4; shift 4",
  'while [ "$n" -gt 0 ]; do',
  '  mount -t tmpfs -o ro,nosuid,nodev,noexec,size=4k,mode=0755 membrane-hidden "$1"',
  "  shift; n=$((n - 1))",
  "done",
  // A working directory inside a hidden one would still reach it: look the path up again, above the mounts.
  'cd -P -- "$PWD" 2>/dev/null || cd /',
  "unset OLDPWD",
  "PATH=$path; export PATH",
  'exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs -- "$@"',
].join("\n");

/**
 * Joins the endpoint's cgroup, then execs the rest. Before `ip netns exec`:
 * it mounts a fresh sysfs on /sys, which hides the cgroup2 mount below it.
 * A failed join fails the launch (126): connect hooks of TracingPolicies
 * attach to that cgroup, so a workload outside it would escape them.
 */
const CGROUP_JOIN = 'echo $$ > "$1/cgroup.procs" || exit 126; shift; exec "$@"';

/** The argv that runs `command` in `netns` with the given isolation, in `cgroup` when given. Pure. */
export function workloadArgv(
  netns: string,
  command: readonly string[],
  iso: WorkloadIsolation,
  cgroup?: string,
): string[] {
  const argv = workloadArgvIn(netns, command, iso);
  return cgroup === undefined ? argv : ["sh", "-c", CGROUP_JOIN, "membrane-cgroup", cgroup, ...argv];
}

function workloadArgvIn(netns: string, command: readonly string[], iso: WorkloadIsolation): string[] {
  if (command.length === 0) {
    throw new MembraneError("CLI_USAGE", "Cannot run a workload: no command given", {
      hint: "Put the command after --, e.g. membrane endpoint exec web -- id",
    });
  }
  if (iso.privileged === true) return ["ip", "netns", "exec", netns, ...command];
  return [
    "ip",
    "netns",
    "exec",
    netns,
    "sh",
    "-c",
    LAUNCH_SCRIPT,
    "membrane-workload",
    String(iso.user.uid),
    String(iso.user.gid),
    iso.user.uid === 0 ? ROOT_PATH : USER_PATH,
    String(iso.hide.length),
    ...iso.hide,
    ...command,
  ];
}

/** PATH of the launcher (it finds ip, mount, setpriv) and of a workload running as uid 0. */
const ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** PATH of a workload running as any other user (as login and setpriv --reset-env set it). */
const USER_PATH = "/usr/local/bin:/usr/bin:/bin";
/** What a workload keeps of the caller's environment: the terminal, the locale and the time zone. */
const KEPT_ENV = /^(TERM|COLORTERM|LANG|LANGUAGE|LC_[A-Z]+|TZ)$/;

/**
 * The environment of an unprivileged workload, reset as sudo does: root's
 * variables may hold tokens and point into root's home. The launcher sets the
 * workload's PATH just before it drops privileges. Pure.
 */
export function workloadEnv(user: WorkloadUser, parent: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(parent)) if (KEPT_ENV.test(k) && v !== undefined) env[k] = v;
  return { ...env, PATH: ROOT_PATH, HOME: user.home, USER: user.name, LOGNAME: user.name };
}

/** Throws when a tool the isolated launch needs is not on PATH. */
export function checkLaunchTools(): void {
  for (const tool of ["ip", "sh", "mount", "setpriv"]) {
    const found = ROOT_PATH.split(delimiter).some((d) => {
      try {
        accessSync(join(d, tool), fsConstants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) {
      throw new MembraneError(
        "WORKLOAD_ISOLATION_FAILED",
        `Cannot start the workload without privileges: ${tool} is not installed`,
        { hint: "Install util-linux and iproute2 (apt-get install util-linux mount iproute2)." },
      );
    }
  }
}

/**
 * Spawns argv with the terminal, passes SIGINT/SIGTERM/SIGHUP/SIGQUIT on to
 * it, and resolves with its exit code: its own, 128+N when killed by signal
 * N (as shells report it), 127 when it could not be started.
 */
export function runWorkload(argv: readonly string[], env?: Record<string, string>): Promise<number> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.resolve(127);
  return new Promise<number>((done) => {
    const child = spawn(cmd, args, { stdio: "inherit", ...(env ? { env } : {}) });
    let exited = false;
    const forward = (sig: NodeJS.Signals): void => {
      if (!exited) child.kill(sig);
    };
    for (const s of FORWARDED_SIGNALS) process.on(s, forward);
    const finish = (code: number): void => {
      exited = true;
      for (const s of FORWARDED_SIGNALS) process.off(s, forward);
      done(code);
    };
    child.on("exit", (code, signal) => {
      finish(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1));
    });
    child.on("error", () => finish(127));
  });
}

/** Process ids inside a network namespace (`ip netns pids`); none when the namespace is gone. */
export async function netnsPids(netns: string): Promise<number[]> {
  // As `ip netns pids` does it, without its process: /proc/<pid>/ns/net against the namespace's inode.
  let want: string;
  try {
    want = `net:[${(await stat(join("/run/netns", netns))).ino}]`;
  } catch {
    return [];
  }
  const pids = (await readdir("/proc")).filter((d) => /^[0-9]+$/.test(d)).map(Number);
  const links = await Promise.all(
    pids.map((pid) =>
      pid > 1 && pid !== process.pid ? readlink(`/proc/${pid}/ns/net`).catch(() => "") : "",
    ),
  );
  return pids.filter((_, i) => links[i] === want);
}

/**
 * Stops every process inside `netns`: SIGTERM, up to `graceMs` for them to
 * exit, then SIGKILL for the rest. Returns how many distinct processes it
 * signalled. Processes started meanwhile are caught by the next round.
 */
export async function stopNetnsProcesses(netns: string, graceMs: number): Promise<number> {
  if (!existsSync(join("/run/netns", netns))) return 0;
  const seen = new Set<number>();
  const signal = (pids: readonly number[], sig: NodeJS.Signals): void => {
    for (const pid of pids) {
      seen.add(pid);
      try {
        process.kill(pid, sig);
      } catch {
        // gone already (ESRCH)
      }
    }
  };
  let pids = await netnsPids(netns);
  if (pids.length === 0) return 0;
  const deadline = Date.now() + Math.max(0, graceMs);
  signal(pids, "SIGTERM");
  while (pids.length > 0 && Date.now() < deadline) {
    await sleep(50);
    pids = await netnsPids(netns);
    signal(
      pids.filter((p) => !seen.has(p)),
      "SIGTERM",
    );
  }
  // Safety net only: SIGKILL cannot be refused, so this ends as soon as the kernel has reaped them.
  for (let round = 0; pids.length > 0 && round < 200; round++) {
    signal(pids, "SIGKILL");
    await sleep(50);
    pids = await netnsPids(netns);
  }
  if (pids.length > 0) {
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot stop the processes in ${netns}: ${pids.length} still running after SIGKILL (pids ${pids.slice(0, 10).join(", ")})`,
      {
        hint: "A process in uninterruptible sleep (state D) cannot be killed; look at it with ps -o pid,stat,cmd.",
      },
    );
  }
  return seen.size;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
