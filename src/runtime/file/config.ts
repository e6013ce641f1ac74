/**
 * A TracingPolicy's Override selectors on file hooks compiled into the
 * configuration of the fanotify responder (native/membrane-fanotify.c). Pure:
 * what exists on disk is asked through `fs`.
 *
 *   TracingPolicy + scope (endpoint netns inodes) + guards (agent pid, host namespaces)
 *     --compileResponder--> { text (config lines), rules[] (rule id -> probe, selector), marks[] }
 *
 * Marks (what the kernel reports to the responder), chosen per Override selector:
 *  - matchArgs Equal on the path: an inode mark on each file that exists (it
 *    follows the object: hard links, bind mounts, relative paths and
 *    /proc/self/fd names reach the same inode), and a directory mark with
 *    FAN_EVENT_ON_CHILD on its parent, so that a file put there later (passwd
 *    renames a new /etc/shadow into place) is still seen; the responder then
 *    compares the path. A missing parent: a filesystem mark on the nearest
 *    existing ancestor.
 *  - any other path condition (Prefix, NotEqual, NotPrefix) or none: a
 *    filesystem mark (FAN_MARK_FILESYSTEM) on the file system holding the
 *    nearest existing ancestor of the prefix (`/` without one), FAN_OPEN_PERM
 *    only: every open on that file system is answered by the responder (a
 *    read-time event on a whole file system would be answered at every
 *    read(2) of the node). Other file systems mounted below it are not covered.
 * Why not mount marks: a mount mark covers one mount in one mount namespace,
 * and workloads do not run in the agent's: `ip netns exec` (datapath/
 * workload.ts) gives each command a new mount namespace with copies of the
 * mounts, which a mount mark does not see (checked: a Prefix policy on a mount
 * mark denied nothing). Inode and filesystem marks follow the objects into
 * every mount namespace. Why not filesystem marks for everything: each
 * marked open of the node waits for the responder (a context switch or two);
 * inode marks cost nothing to the opens of other files. A workload with its
 * own root (a container image) has its own files, which Equal paths name
 * through the agent's view only where they are the same inodes.
 *
 * Injection: values reach the text only after SAFE_STRING (policy/values.ts),
 * checked again here; the responder reads one item per line.
 */
import type { TracingPolicy, TracingProbe, TracingSelector, FanotifyEvents } from "../policy/types.js";
import { SAFE_STRING, MAX_STRING_VALUE } from "../policy/values.js";
import type { ScriptGuards, ScriptScope } from "../enforce/script.js";

export interface ResponderRule {
  /** The responder's rule id (its reports name it). */
  readonly id: number;
  readonly probe: TracingProbe;
  readonly selector: number;
  /** deny: an Override selector; pass: an earlier-or-later selector that decides without a denial. */
  readonly verdict: "deny" | "pass";
  /** NoPost: denied without an event. */
  readonly post: boolean;
  /** The probe's path argument index (0, or 1 for fd_install). */
  readonly pathArg: number | undefined;
}

export interface ResponderMark {
  readonly kind: "inode" | "dir" | "filesystem";
  readonly events: FanotifyEvents;
  readonly path: string;
}

export interface ResponderConfig {
  readonly text: string;
  readonly rules: readonly ResponderRule[];
  readonly marks: readonly ResponderMark[];
}

/** What the planner asks of the file system: "file", "dir", or undefined when nothing is there. */
export interface FsView {
  kind(path: string): "file" | "dir" | undefined;
}

function isOverride(s: TracingSelector): boolean {
  return s.actions.some((a) => a.action === "Override");
}

/** Whether the policy needs a responder: an Override selector on a file hook. */
export function needsResponder(p: TracingPolicy): boolean {
  return p.probes.some((pr) => pr.fanotify !== undefined && pr.selectors.some(isOverride));
}

function checked(s: string): string {
  if (!SAFE_STRING.test(s) || s.length > MAX_STRING_VALUE)
    throw new Error(`internal: unchecked string reached the responder config: ${JSON.stringify(s)}`);
  return s;
}

function parentOf(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function nearestDir(path: string, fs: FsView): string {
  let p = path;
  for (let i = 0; i < 64 && p !== "/"; i++) {
    if (fs.kind(p) === "dir") return p;
    p = parentOf(p);
  }
  return "/";
}

/** Events of a mark: read-time events only on files and directories, never on a whole file system. */
function marksFor(s: TracingSelector, probe: TracingProbe, fs: FsView): ResponderMark[] {
  const events = probe.fanotify ?? "open";
  const paths = s.matchArgs.filter((m) => m.kind === "string");
  const equal = paths.find((m) => m.operator === "Equal");
  if (equal && equal.kind === "string") {
    const out: ResponderMark[] = [];
    for (const v of equal.values) {
      if (!v.startsWith("/")) {
        out.push({ kind: "filesystem", events: "open", path: "/" });
        continue;
      }
      if (fs.kind(v) === "file") out.push({ kind: "inode", events, path: v });
      const dir = parentOf(v);
      if (fs.kind(dir) === "dir") out.push({ kind: "dir", events, path: dir });
      else out.push({ kind: "filesystem", events: "open", path: nearestDir(dir, fs) });
    }
    return out;
  }
  const prefix = paths.find((m) => m.operator === "Prefix");
  if (prefix && prefix.kind === "string")
    return prefix.values.map((v) => ({
      kind: "filesystem",
      events: "open",
      path: v.startsWith("/") ? nearestDir(v, fs) : "/",
    }));
  return [{ kind: "filesystem", events: "open", path: "/" }];
}

const OPS = { Equal: "eq", NotEqual: "ne", Prefix: "pre", NotPrefix: "npre", In: "eq", NotIn: "ne" } as const;
const NS = {
  Net: "net",
  Mnt: "mnt",
  Uts: "uts",
  Ipc: "ipc",
  Cgroup: "cgroup",
  Time: "time",
  User: "user",
} as const;

function condLines(s: TracingSelector, guards: ScriptGuards): string[] {
  const out: string[] = [];
  const cond = (kind: string, op: string, values: readonly string[]): void => {
    out.push(`cond ${kind} ${op} ${values.length}`, ...values.map((v) => `val ${v}`));
  };
  for (const m of s.matchArgs) if (m.kind === "string") cond("path", OPS[m.operator], m.values.map(checked));
  for (const b of s.matchBinaries) cond("bin", OPS[b.operator], b.values.map(checked));
  for (const p of s.matchPIDs) cond("pid", OPS[p.operator], p.values.map(String));
  for (const n of s.matchNamespaces)
    cond(
      `ns-${NS[n.namespace]}`,
      OPS[n.operator],
      // host_ns unknown (PID 1's namespace unreadable): 0, which no namespace has.
      n.values.map((v) => String(v === "host_ns" ? (guards.hostNamespaces[n.namespace] ?? 0) : v)),
    );
  return out;
}

/** Compiles the responder's configuration; throws only on internal errors (the policy was validated). */
export function compileResponder(
  p: TracingPolicy,
  scope: ScriptScope,
  guards: ScriptGuards,
  fs: FsView,
): ResponderConfig {
  const rules: ResponderRule[] = [];
  const marks = new Map<string, ResponderMark>();
  const lines = ["membrane-fanotify 1"];
  if (scope.netns === "node") lines.push("node");
  else for (const ino of scope.netns) lines.push(`scope ${ino}`);
  // Never denied: PID 1 and the agent (as the bpftrace kills exempt them).
  lines.push("exempt 1", `exempt ${guards.agentPid}`);
  for (const probe of p.probes) {
    if (probe.fanotify === undefined || !probe.selectors.some(isOverride)) continue;
    const pathArg = [...(probe.attach[0]?.args.keys() ?? [])][0];
    probe.selectors.forEach((s, si) => {
      const deny = isOverride(s);
      const rule: ResponderRule = {
        id: rules.length,
        probe,
        selector: si,
        verdict: deny ? "deny" : "pass",
        post: !s.actions.some((a) => a.action === "NoPost"),
        pathArg,
      };
      rules.push(rule);
      const verdict = deny ? (rule.post ? "deny" : "denyq") : "pass";
      lines.push(`rule ${rule.id} ${verdict} ${probe.fanotify === "open+read" ? "both" : "open"}`);
      lines.push(...condLines(s, guards));
      if (deny)
        for (const m of marksFor(s, probe, fs)) {
          const key = `${m.kind} ${m.path}`;
          const had = marks.get(key);
          marks.set(key, had && had.events === "open+read" ? had : m);
        }
    });
  }
  const markLines = [...marks.values()].map(
    (m) => `mark ${m.kind} ${m.events === "open+read" ? "both" : "open"} ${checked(m.path)}`,
  );
  // Marks after the rules: the responder answers events only once it has read "end".
  const text = [...lines, ...markLines, "end", ""].join("\n");
  return { text, rules, marks: [...marks.values()] };
}
