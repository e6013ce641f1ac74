/**
 * A TracingPolicy compiled into one bpftrace program (pure: no I/O).
 *
 *   TracingPolicy + scope (endpoint netns inodes) + guards (agent pid, host namespaces)
 *     --compileScript--> { text, rules[] }     rule id -> (probe, selector, action) for output.ts
 *
 * Injection: nothing from the policy reaches the text except integers (printed
 * from bigint/number) and strings that passed runtime/policy/values.ts's
 * SAFE_STRING (no quote, backslash, `%`, control character), checked again
 * here before they are written between double quotes. Field names, guards and
 * map names come from Membrane's own tables.
 *
 * When a kill happens: the programs run at syscall entry (sys_enter_*) and
 * send the signal with bpf_send_signal, which the kernel delivers when the
 * task returns to user space. The syscall itself still runs to completion in
 * the kernel (an openat opens the file, an execve of an existing file...
 * see docs in the report) but the process dies before it sees the result:
 * `cat /etc/shadow` prints nothing and exits 137. Side effects inside the
 * kernel (a file created by open(O_CREAT), a mount done by mount(2), a
 * connection's SYN sent) do happen.
 */
import { checkUprobePath, checkUprobeSymbol } from "../policy/uprobe.js";
import type {
  ArgSource,
  AttachPoint,
  TracingPolicy,
  TracingProbe,
  TracingSelector,
  NamespaceType,
} from "../policy/types.js";
import { SAFE_STRING, MAX_STRING_VALUE } from "../policy/values.js";
import type { PolicyEventAction } from "./events.js";

/**
 * bpftrace's string size (BPFTRACE_STRLEN); values are at most MAX_STRING_VALUE < this.
 * 96 and more overflowed the 512-byte BPF stack for an execve probe with a Prefix
 * match and an event (bpftrace 0.17 keeps strings and printf arguments on
 * the stack; 88 was the largest that loaded); 80 leaves room. A policy that still does not fit fails to load
 * with RUNTIME_ENFORCER_FAILED naming the stack limit: never half-attached.
 */
export const SCRIPT_STRLEN = 80;

export interface ScriptScope {
  /** Network namespace inodes of the selected endpoints, or "node": every process (no podSelector). */
  readonly netns: readonly number[] | "node";
}

export interface ScriptGuards {
  /** Never signalled (nor its direct children, for node-wide policies). */
  readonly agentPid: number;
  /** `host_ns` in matchNamespaces: PID 1's namespace inodes. */
  readonly hostNamespaces: Partial<Record<NamespaceType, number>>;
}

export interface CompiledRule {
  readonly id: number;
  readonly probe: TracingProbe;
  readonly attach: AttachPoint;
  /** -1: the probe has no selectors (every call posts). */
  readonly selector: number;
  readonly action: PolicyEventAction;
  readonly signal: number | undefined;
  /** Declared int args, in the order they are printed. */
  readonly intArgs: readonly number[];
  /** The declared string arg printed (at most one: the BPF stack is 512 bytes). */
  readonly strArg: number | undefined;
}

export interface CompiledScript {
  readonly text: string;
  readonly rules: readonly CompiledRule[];
  /**
   * How many probes the text declares (BEGIN and END included), which is what bpftrace's
   * `attached_probes` must say: bpftrace 0.17 skips a uprobe whose symbol is not in its file
   * without an error, so a smaller count is a policy partly dead (bpftrace.ts refuses it).
   */
  readonly probes: number;
  /** The uprobes among them (`uprobe:PATH:SYMBOL`), for that error. */
  readonly uprobes: readonly string[];
}

function lit(s: string): string {
  if (!SAFE_STRING.test(s) || s.length > MAX_STRING_VALUE)
    throw new Error(`internal: unchecked string reached the script generator: ${JSON.stringify(s)}`);
  return `"${s}"`;
}

function int(n: bigint | number): string {
  const v = typeof n === "bigint" ? n : BigInt(n);
  return v.toString(10);
}

const NETNS = "curtask->nsproxy->net_ns->ns.inum";
const NS_EXPR: Record<NamespaceType, string> = {
  Net: NETNS,
  Mnt: "curtask->nsproxy->mnt_ns->ns.inum",
  Uts: "curtask->nsproxy->uts_ns->ns.inum",
  Ipc: "curtask->nsproxy->ipc_ns->ns.inum",
  Cgroup: "curtask->nsproxy->cgroup_ns->ns.inum",
  Time: "curtask->nsproxy->time_ns->ns.inum",
  User: "curtask->cred->user_ns->ns.inum",
};
const CAP_EXPR = {
  Effective: "cap_effective",
  Inheritable: "cap_inheritable",
  Permitted: "cap_permitted",
} as const;

function anyOf(xs: string[]): string {
  return xs.length === 1 ? (xs[0] as string) : `(${xs.join(" || ")})`;
}
function allOf(xs: string[]): string {
  return xs.length === 0 ? "1" : xs.length === 1 ? (xs[0] as string) : `(${xs.join(" && ")})`;
}

interface Ctx {
  readonly guards: ScriptGuards;
  /** Binary-match maps: key "selectorPath#i" -> map name. */
  readonly binaryMaps: Map<string, { name: string; cond: (v: string) => string }>;
}

/**
 * How a program reads an argument source: a tracepoint's field (`args->filename`), or a uprobe's
 * register (`arg0`; uprobe.ts makes the field name, never the policy text).
 */
function ref(a: AttachPoint, src: ArgSource): string {
  if (a.uprobe === undefined) return `args->${src.field}`;
  if (!/^arg[0-5]$/.test(src.field)) throw new Error(`internal: ${src.field} is not a uprobe register`);
  return src.field;
}

/** The probe's bpftrace name; a uprobe's path and symbol are checked again here (injection). */
function probeName(a: AttachPoint): string {
  if (a.uprobe === undefined) return `tracepoint:${a.tracepoint}`;
  const { path, symbol } = a.uprobe;
  if (checkUprobePath(path) !== undefined || checkUprobeSymbol(symbol) !== undefined)
    throw new Error(`internal: unchecked uprobe reached the script generator: ${path}:${symbol}`);
  return `uprobe:${path}:${symbol}`;
}

function strVar(index: number): string {
  return `$s${index}`;
}

/**
 * Postfix: how far the length of a user string is looked for (1-byte reads in
 * a bounded loop: no string buffer on the 512-byte stack). A longer string,
 * or one whose page is not faulted in, has no length here: Postfix does not
 * match it, NotPostfix does.
 */
export const SUFFIX_SCAN = 256;

function lenVar(index: number): string {
  return `$n${index}`;
}

function selectorCondition(s: TracingSelector, a: AttachPoint, ctx: Ctx): string {
  const parts: string[] = [];
  for (const m of s.matchArgs) {
    const src = a.args.get(m.index);
    if (!src) return "0"; // this attach point cannot read the argument: the selector cannot match here
    if (m.kind === "string") {
      const v = strVar(m.index);
      const one = (x: string): string =>
        m.operator === "Equal" || m.operator === "NotEqual"
          ? `${v} == ${lit(x)}`
          : `strncmp(${v}, ${lit(x)}, ${x.length}) == 0`;
      const any = anyOf(m.values.map(one));
      parts.push(m.operator.startsWith("Not") ? `!${any}` : any);
    } else if (m.kind === "suffix") {
      if (src.kind !== "ustr") return "0"; // refused at validation (selectors.ts)
      const n = lenVar(m.index);
      // The tail: the last x.length bytes and the NUL, read from where they are (&& short-circuits).
      const one = (x: string): string =>
        `(${n} >= ${x.length} && ${n} < ${SUFFIX_SCAN} && str(uptr((uint64)${ref(a, src)} + ${n} - ${x.length}), ${x.length + 1}) == ${lit(x)})`;
      const any = anyOf(m.values.map(one));
      parts.push(m.operator === "NotPostfix" ? `!${any}` : any);
    } else if (m.kind === "addr" || m.kind === "family") {
      // Served only by the connect guard (connect.ts refuses them where bpftrace would get them).
      return "0";
    } else {
      const f =
        src.kind === "sock" ? (m.operator.endsWith("SPort") ? "args->sport" : "args->dport") : ref(a, src);
      const one = (x: bigint): string => {
        switch (m.operator) {
          case "GT":
            return `(int64)${f} > ${int(x)}`;
          case "LT":
            return `(int64)${f} < ${int(x)}`;
          case "Mask":
            return `((uint64)${f} & ${int(x)}) != 0`;
          default:
            return `(int64)${f} == ${int(x)}`;
        }
      };
      const any = anyOf(m.values.map(one));
      parts.push(m.operator.startsWith("Not") ? `!${any}` : any);
    }
  }
  s.matchBinaries.forEach((b, i) => {
    const key = `${s.path}#${i}`;
    let entry = ctx.binaryMaps.get(key);
    if (!entry) {
      const cond = (v: string): string =>
        anyOf(
          b.values.map((x) =>
            b.operator === "In" || b.operator === "NotIn"
              ? `${v} == ${lit(x)}`
              : `strncmp(${v}, ${lit(x)}, ${x.length}) == 0`,
          ),
        );
      entry = { name: `@bin${ctx.binaryMaps.size}`, cond };
      ctx.binaryMaps.set(key, entry);
    }
    const inList = `${entry.name}[pid] == 1`;
    parts.push(b.operator === "In" || b.operator === "Prefix" ? inList : `!(${inList})`);
  });
  for (const p of s.matchPIDs) {
    const any = anyOf(p.values.map((x) => `pid == ${int(x)}`));
    parts.push(p.operator === "In" ? any : `!${any}`);
  }
  for (const n of s.matchNamespaces) {
    const values = n.values.map((x) => (x === "host_ns" ? ctx.guards.hostNamespaces[n.namespace] : x));
    // host_ns unknown (PID 1's namespace unreadable): compare with 0, which no namespace has.
    const any = anyOf(values.map((x) => `${NS_EXPR[n.namespace]} == ${int(x ?? 0)}`));
    parts.push(n.operator === "In" ? any : `!${any}`);
  }
  for (const c of s.matchCapabilities) {
    const mask = c.values.reduce((m, v) => m | (1n << BigInt(v)), 0n);
    const has = `(curtask->cred->${CAP_EXPR[c.type]}.val & ${int(mask)}) != 0`;
    parts.push(c.operator === "In" ? has : `!(${has})`);
  }
  return allOf(parts);
}

function isOverride(s: TracingSelector): boolean {
  return s.actions.some((x) => x.action === "Override");
}

/** Compiles `p` for the given scope; throws only on internal errors (the policy was validated). */
export function compileScript(p: TracingPolicy, scope: ScriptScope, guards: ScriptGuards): CompiledScript {
  const ctx: Ctx = { guards, binaryMaps: new Map() };
  const rules: CompiledRule[] = [];
  const blocks: string[] = [];
  const nodeWide = scope.netns === "node";
  const scopePred = nodeWide ? "" : `@scope[(uint64)${NETNS}] == 1`;
  // Never signalled: PID 1, the agent, and (node-wide policies) the agent's direct children (this bpftrace, ip, nft).
  const exempt = [`pid != 1`, `pid != ${int(guards.agentPid)}`];
  if (nodeWide) exempt.push(`curtask->real_parent->tgid != ${int(guards.agentPid)}`);

  for (const probe of p.probes) {
    // Override selectors are the fanotify responder's (src/runtime/file/); a probe with nothing else needs no program.
    if (probe.selectors.length > 0 && probe.selectors.every(isOverride)) continue;
    for (const a of probe.attach) {
      const declaredStr = probe.args.filter((x) => {
        const s = a.args.get(x.index);
        return s !== undefined && (s.kind === "ustr" || s.kind === "kstr");
      });
      const intArgs = probe.args
        .filter((x) => {
          const s = a.args.get(x.index);
          return s !== undefined && (s.kind === "int" || s.kind === "sock");
        })
        .map((x) => x.index);
      const strArg = declaredStr[0]?.index;
      const strIdx = new Set<number>(strArg === undefined ? [] : [strArg]);
      for (const s of probe.selectors)
        for (const m of s.matchArgs) if (m.kind === "string" && a.args.has(m.index)) strIdx.add(m.index);
      const body: string[] = [];
      for (const i of [...strIdx].sort((x, y) => x - y)) {
        const src = a.args.get(i);
        if (src) body.push(`  ${strVar(i)} = str(${ref(a, src)});`);
      }
      const lenIdx = new Set<number>();
      for (const s of probe.selectors)
        for (const m of s.matchArgs)
          if (m.kind === "suffix" && a.args.get(m.index)?.kind === "ustr") lenIdx.add(m.index);
      for (const i of [...lenIdx].sort((x, y) => x - y)) {
        const src = a.args.get(i);
        if (!src) continue;
        const f = `(uint64)${ref(a, src)}`;
        const n = lenVar(i);
        body.push(
          `  ${n} = (uint64)0;`,
          `  while (${n} < ${SUFFIX_SCAN}) { if (*(uint8 *)uptr(${f} + ${n}) == 0) { break; } ${n}++; }`,
        );
      }
      body.push("  $m = 0;");
      const emit = (rule: CompiledRule, kill: boolean, post: boolean): string[] => {
        const out: string[] = [];
        out.push("    $k = 0;");
        if (kill) out.push(`    if (${exempt.join(" && ")}) { signal(${int(rule.signal ?? 9)}); $k = 1; }`);
        if (post) {
          const fmt = ["%d", "%d", "%d", "%d", "%u", "%lu", "%lu", "%d", ...intArgs.map(() => "%ld"), "%r"];
          const vals = [
            int(rule.id),
            "pid",
            "tid",
            "uid",
            NETNS,
            "cgroup",
            "nsecs",
            "$k",
            ...intArgs.map((i) => {
              const src = a.args.get(i);
              if (!src) throw new Error(`internal: argument ${i} has no source`);
              return src.kind === "sock" ? "(int64)args->dport" : `(int64)${ref(a, src)}`;
            }),
            "buf(comm, 16)",
          ];
          if (strArg !== undefined) {
            fmt.push("%r");
            vals.push(`buf(${strVar(strArg)}, ${SCRIPT_STRLEN})`);
          }
          out.push(`    printf("E\\t${fmt.join("\\t")}\\n", ${vals.join(", ")});`);
        }
        return out;
      };
      const sels = probe.selectors.length === 0 ? [undefined] : probe.selectors;
      sels.forEach((s, si) => {
        if (s !== undefined && isOverride(s)) {
          // Matched first, it decides (Tetragon's order): nothing posted here, the responder reports it.
          body.push(`  if ($m == 0 && ${selectorCondition(s, a, ctx)}) { $m = -1; }`);
          return;
        }
        const kill = s?.actions.find((x) => x.action === "Sigkill" || x.action === "Signal");
        const post = !(s?.actions.some((x) => x.action === "NoPost") ?? false);
        const signal = kill === undefined ? undefined : kill.action === "Signal" ? kill.signal : 9;
        const rule: CompiledRule = {
          id: rules.length,
          probe,
          attach: a,
          selector: s === undefined ? -1 : si,
          action:
            kill === undefined
              ? "KPROBE_ACTION_POST"
              : kill.action === "Sigkill"
                ? "KPROBE_ACTION_SIGKILL"
                : "KPROBE_ACTION_SIGNAL",
          signal,
          intArgs,
          strArg,
        };
        rules.push(rule);
        const cond = s === undefined ? "1" : selectorCondition(s, a, ctx);
        body.push(
          `  if ($m == 0 && ${cond}) {`,
          `    $m = ${rule.id + 1};`,
          ...emit(rule, kill !== undefined, post),
          "  }",
        );
      });
      const preds = [scopePred, a.guard ? `(${a.guard})` : ""].filter((x) => x !== "");
      blocks.push(`${probeName(a)}${preds.length ? ` /${preds.join(" && ")}/` : ""} {`, ...body, "}");
    }
  }

  const head: string[] = [];
  if (ctx.binaryMaps.size > 0) {
    // The binary of each process, learnt at exec (and inherited at fork): processes
    // that exec'd before this program loaded are unknown and count as "not in the list".
    const execBody = ["  $f = str(args->filename);"];
    for (const { name, cond } of ctx.binaryMaps.values())
      execBody.push(`  if (${cond("$f")}) { ${name}[pid] = 1; } else { delete(${name}[pid]); }`);
    head.push(`tracepoint:sched:sched_process_exec${nodeWide ? "" : ` /${scopePred}/`} {`, ...execBody, "}");
    head.push("tracepoint:sched:sched_process_fork {");
    for (const { name } of ctx.binaryMaps.values())
      head.push(`  if (${name}[pid] == 1) { ${name}[(uint64)args->child_pid] = 1; }`);
    head.push("}");
    head.push("tracepoint:sched:sched_process_exit /tid == pid/ {");
    for (const { name } of ctx.binaryMaps.values()) head.push(`  delete(${name}[pid]);`);
    head.push("}");
  }
  const begin = ["BEGIN {"];
  if (!nodeWide) for (const i of scope.netns) begin.push(`  @scope[(uint64)${int(i)}] = 1;`);
  // Printed after every probe above is attached (bpftrace runs BEGIN last): the loader waits for it.
  begin.push('  printf("READY\\n");', "}");
  // bpftrace prints every map when it stops: clear them so its output stays events only.
  const end = [
    "END {",
    "  clear(@scope);",
    ...[...ctx.binaryMaps.values()].map((b) => `  clear(${b.name});`),
    "}",
  ];
  if (nodeWide) end.splice(1, 1);
  const lines = ["// generated by membrane: do not edit", ...begin, ...head, ...blocks, ...end, ""];
  // Every probe starts a line at column 0 and ends it with "{" (bodies are indented).
  const probes = lines.filter((l) => /^[A-Za-z].*\{$/.test(l)).length;
  const uprobes = p.probes.flatMap((x) => x.attach.flatMap((a) => (a.uprobe ? [probeName(a)] : [])));
  return { text: lines.join("\n"), rules, probes, uprobes: [...new Set(uprobes)] };
}
