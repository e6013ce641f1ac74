/**
 * `selectors[]` of a kprobe or tracepoint: the match* filters and
 * matchActions, read against the hook's translation (which arguments exist
 * and of what kind). Filters Tetragon defines but this enforcer cannot serve
 * are named errors (POLICY_UNSUPPORTED), never ignored.
 */
import type { Fields, Val } from "../../policy/api/fields.js";
import type { Translation } from "./translation.js";
import { readAction } from "./actions.js";
import { parseCidr } from "./cidr.js";
import type {
  AddrOperator,
  ArgMatch,
  BinaryMatch,
  BinaryOperator,
  CapabilityMatch,
  IntOperator,
  NamespaceMatch,
  NamespaceType,
  PidMatch,
  StringOperator,
  TracingSelector,
} from "./types.js";
import { CAPABILITIES, checkString, parseInteger } from "./values.js";

export const SELECTOR_FIELDS = [
  "matchArgs",
  "matchBinaries",
  "matchParentBinaries",
  "matchPIDs",
  "matchNamespaces",
  "matchCapabilities",
  "matchActions",
  // Tetragon fields refused with a reason (UNSUPPORTED_SELECTOR_FIELDS).
  "matchData",
  "matchReturnArgs",
  "matchReturnActions",
  "matchNamespaceChanges",
  "matchCapabilityChanges",
  "label",
  "macros",
] as const;

const UNSUPPORTED_SELECTOR_FIELDS: Record<string, string> = {
  matchData: "matchData is not supported: hooks here read arguments only",
  matchReturnArgs:
    "matchReturnArgs is not supported: Membrane attaches at syscall entry (return probes are not served)",
  matchReturnActions:
    "matchReturnActions is not supported: Membrane attaches at syscall entry (return probes are not served)",
  matchNamespaceChanges: "matchNamespaceChanges is not supported yet (use a setns/unshare syscall kprobe)",
  matchCapabilityChanges: "matchCapabilityChanges is not supported yet (use a capset syscall kprobe)",
  label: "selector labels are not supported",
  macros: "selector macros are not supported",
};

export const MATCH_ARGS_FIELDS = ["index", "operator", "values"] as const;
export const MATCH_BINARIES_FIELDS = ["operator", "values", "followChildren"] as const;
export const MATCH_PIDS_FIELDS = ["operator", "values", "isNamespacePID", "followForks"] as const;
export const MATCH_NAMESPACES_FIELDS = ["namespace", "operator", "values"] as const;
export const MATCH_CAPABILITIES_FIELDS = ["type", "operator", "values", "isNamespaceCapability"] as const;
const STRING_OPS: readonly StringOperator[] = ["Equal", "NotEqual", "Prefix", "NotPrefix"];
/**
 * Postfix on a string argument is compiled only where the string is read
 * from user memory by pointer (syscall arguments: enforce/script.ts finds its
 * length with a bounded loop of 1-byte reads); a `__data_loc` string of a
 * tracepoint and the binary's path (matchBinaries, read at exec) have no such
 * pointer in bpftrace 0.17. Refused there, not approximated.
 */
const POSTFIX_REFUSED =
  "Postfix/NotPostfix is served only on string arguments of syscalls (read by pointer from user memory); use Equal or Prefix here";
const POSTFIX_WITH_OVERRIDE =
  "Postfix/NotPostfix cannot be checked by the fanotify responder that serves Override; use Equal or Prefix";
const INT_OPS: readonly IntOperator[] = ["Equal", "NotEqual", "GT", "LT", "Mask"];
const SOCK_OPS: readonly IntOperator[] = ["DPort", "NotDPort", "SPort", "NotSPort"];
/** Read as CIDRs (connect hooks on endpoints: connect.ts checks where they can be served). */
const ADDR_OPS: readonly AddrOperator[] = ["DAddr", "NotDAddr", "SAddr", "NotSAddr"];
const SOCKADDR_OPS: readonly string[] = ["SAddr", "NotSAddr", "SPort", "NotSPort", "Family"];
const FAMILIES: Record<string, 2 | 10> = { AF_INET: 2, AF_INET6: 10, "2": 2, "10": 10 };
const BINARY_OPS: readonly BinaryOperator[] = ["In", "NotIn", "Prefix", "NotPrefix"];
const NS_TYPES: readonly NamespaceType[] = ["Uts", "Ipc", "Mnt", "Net", "Time", "Cgroup", "User"];

function oneOf<T extends string>(v: Val | undefined, allowed: readonly T[], what: string): T | undefined {
  const s = v?.str();
  if (s === undefined || v === undefined) return undefined;
  if ((allowed as readonly string[]).includes(s)) return s as T;
  return v.error(`${what} ${JSON.stringify(s)} is not one of ${allowed.join(", ")}`);
}

function valuesOf(v: Val | undefined): Val[] {
  return v?.list() ?? [];
}

function readString(v: Val): string | undefined {
  const s = v.kind === "number" ? String((v.node as { value: unknown }).value) : v.str();
  if (s === undefined) return undefined;
  const bad = checkString(s);
  return bad ? v.error(`value ${JSON.stringify(s.slice(0, 40))} ${bad}`) : s;
}

function readInt(v: Val): bigint | undefined {
  const raw = v.strOrNum();
  if (raw === undefined) return undefined;
  const n = parseInteger(raw);
  return n === undefined
    ? v.error(`${JSON.stringify(raw)} is not an integer (decimal or 0x-hex, 64 bits)`)
    : n;
}

function readMatchArg(v: Val, tr: Translation, declared: ReadonlyMap<number, string>): ArgMatch | undefined {
  const f = v.map(MATCH_ARGS_FIELDS);
  if (!f) return undefined;
  const idxVal = f.need("index");
  const index = idxVal?.int(0, 15);
  const opVal = f.need("operator");
  const op = opVal?.str();
  const vals = f.need("values");
  if (index === undefined || op === undefined || !idxVal || !opVal || !vals) return undefined;
  const have = tr.argTypes.get(index);
  if (have === undefined) {
    const avail = [...tr.argTypes.keys()].join(", ") || "none";
    return idxVal.unsupported(
      `argument ${index} of ${tr.functionName} cannot be read on this kernel (readable: ${avail}); see the translation table`,
    );
  }
  if (!declared.has(index)) idxVal.warn(`argument ${index} is not declared in args[]; it is read as ${have}`);
  const items = valuesOf(vals);
  if (items.length === 0) return vals.error("values must list at least one value");
  if (have === "string") {
    if (op === "Postfix" || op === "NotPostfix") {
      if (!tr.attach.every((a) => a.args.get(index)?.kind !== "kstr"))
        return opVal.unsupported(POSTFIX_REFUSED);
      const values = items.map(readString);
      return values.every((x) => x !== undefined)
        ? { index, kind: "suffix", operator: op, values: values as string[] }
        : undefined;
    }
    if (!(STRING_OPS as readonly string[]).includes(op))
      return opVal.unsupported(
        `operator ${JSON.stringify(op)} is not supported on string argument ${index} (use ${STRING_OPS.join(", ")})`,
      );
    const values = items.map(readString);
    return values.every((x) => x !== undefined)
      ? { index, kind: "string", operator: op as StringOperator, values: values as string[] }
      : undefined;
  }
  if (have !== "int" && tr.connect && (ADDR_OPS as readonly string[]).includes(op)) {
    const cidrs = items.map((x) => {
      const s = x.str();
      const c = s === undefined ? undefined : parseCidr(s);
      return (
        c ?? x.error(`${JSON.stringify(s)} is not an IPv4 or IPv6 address or CIDR (10.0.0.0/8, fd00::/8)`)
      );
    });
    return cidrs.every((x) => x !== undefined)
      ? { index, kind: "addr", operator: op as AddrOperator, values: cidrs }
      : undefined;
  }
  if (have !== "int" && tr.connect && op === "Family") {
    const fams = items.map((x) => {
      const s = x.strOrNum();
      const f = s === undefined || !Object.hasOwn(FAMILIES, s) ? undefined : FAMILIES[s];
      return (
        f ?? x.error(`${JSON.stringify(s)} is not AF_INET or AF_INET6 (connect programs see only these)`)
      );
    });
    return fams.every((x) => x !== undefined)
      ? { index, kind: "family", operator: "Family", values: fams as (2 | 10)[] }
      : undefined;
  }
  const ops: readonly string[] =
    have === "sockaddr"
      ? SOCKADDR_OPS
      : have === "sock"
        ? [...SOCK_OPS, ...(tr.connect ? ["DAddr", "NotDAddr", "Family"] : [])]
        : INT_OPS;
  if (!ops.includes(op) || (have === "sockaddr" && !tr.connect))
    return opVal.unsupported(
      `operator ${JSON.stringify(op)} is not supported on ${have === "sock" ? "socket" : have === "sockaddr" ? "sockaddr" : "integer"} argument ${index} (use ${ops.join(", ")})`,
    );
  if ((op === "GT" || op === "LT") && items.length !== 1) return vals.error(`${op} takes exactly one value`);
  const values = items.map(readInt);
  return values.every((x) => x !== undefined)
    ? { index, kind: "int", operator: op as IntOperator, values: values as bigint[] }
    : undefined;
}

function readBinaries(v: Val): BinaryMatch | undefined {
  const f = v.map(MATCH_BINARIES_FIELDS);
  if (!f) return undefined;
  const opVal = f.need("operator");
  if (opVal?.kind === "string" && ["Postfix", "NotPostfix"].includes(opVal.str() ?? ""))
    return opVal.unsupported(POSTFIX_REFUSED);
  const operator = oneOf(opVal, BINARY_OPS, "operator");
  if (f.get("followChildren")?.bool() === true)
    f.get("followChildren")?.unsupported("followChildren is not supported yet");
  const items = valuesOf(f.need("values"));
  if (items.length === 0) return f.self.error("values must list at least one binary");
  const values = items.map(readString);
  if (operator === undefined || !values.every((x) => x !== undefined)) return undefined;
  return { operator, values: values as string[] };
}

function readPids(v: Val): PidMatch | undefined {
  const f = v.map(MATCH_PIDS_FIELDS);
  if (!f) return undefined;
  const operator = oneOf(f.need("operator"), ["In", "NotIn"] as const, "operator");
  if (f.get("isNamespacePID")?.bool() === true)
    f.get("isNamespacePID")?.unsupported(
      "isNamespacePID is not supported: PIDs are matched in the node's PID namespace",
    );
  const followForks = f.get("followForks")?.bool() === true;
  const items = valuesOf(f.need("values"));
  const values = items.map((x) => x.int(0, 4194304, true));
  if (items.length === 0) return f.self.error("values must list at least one PID");
  if (operator === undefined || !values.every((x) => x !== undefined)) return undefined;
  return { operator, values: values as number[], followForks };
}

function readNamespaces(v: Val): NamespaceMatch | undefined {
  const f = v.map(MATCH_NAMESPACES_FIELDS);
  if (!f) return undefined;
  const nsVal = f.need("namespace");
  const ns = nsVal?.str();
  if (ns !== undefined && !(NS_TYPES as readonly string[]).includes(ns)) {
    return ["Pid", "PidForChildren", "TimeForChildren"].includes(ns)
      ? nsVal?.unsupported(`namespace ${ns} is not supported (use one of ${NS_TYPES.join(", ")})`)
      : nsVal?.error(`namespace ${JSON.stringify(ns)} is not one of ${NS_TYPES.join(", ")}`);
  }
  const operator = oneOf(f.need("operator"), ["In", "NotIn"] as const, "operator");
  const items = valuesOf(f.need("values"));
  if (items.length === 0) return f.self.error("values must list at least one namespace inode or host_ns");
  const values = items.map((x): number | "host_ns" | undefined => {
    const s = x.strOrNum();
    if (s === "host_ns") return "host_ns";
    const n = s === undefined ? undefined : parseInteger(s);
    if (n === undefined || n < 0n || n > 0xffffffffn)
      return x.error(`${JSON.stringify(s)} is not a namespace inode number or "host_ns"`);
    return Number(n);
  });
  if (ns === undefined || operator === undefined || !values.every((x) => x !== undefined)) return undefined;
  return { namespace: ns as NamespaceType, operator, values: values as (number | "host_ns")[] };
}

function readCapabilities(v: Val): CapabilityMatch | undefined {
  const f = v.map(MATCH_CAPABILITIES_FIELDS);
  if (!f) return undefined;
  const type = f.get("type")
    ? oneOf(f.get("type"), ["Effective", "Inheritable", "Permitted"] as const, "type")
    : "Effective";
  const operator = oneOf(f.need("operator"), ["In", "NotIn"] as const, "operator");
  if (f.get("isNamespaceCapability")?.bool() === true)
    f.get("isNamespaceCapability")?.unsupported("isNamespaceCapability is not supported yet");
  const items = valuesOf(f.need("values"));
  if (items.length === 0) return f.self.error("values must list at least one capability");
  const values = items.map((x) => {
    const s = x.str();
    if (s === undefined) return undefined;
    const n = Object.hasOwn(CAPABILITIES, s) ? CAPABILITIES[s] : undefined;
    return n ?? x.error(`unknown capability ${JSON.stringify(s)} (write it as CAP_SYS_ADMIN, ...)`);
  });
  if (type === undefined || operator === undefined || !values.every((x) => x !== undefined)) return undefined;
  return { type, operator, values: values as number[] };
}

const OVERRIDE_WITH_KILL =
  "Override and Sigkill/Signal in one selector: the access is denied by fanotify, the kill comes from a syscall tracepoint; use two selectors";
const OVERRIDE_WITH_CAPS =
  "matchCapabilities cannot be checked by the fanotify responder that serves Override on this probe; use matchBinaries, matchPIDs or matchNamespaces";

export function readSelectors(
  list: Val,
  tr: Translation,
  declared: ReadonlyMap<number, string>,
): TracingSelector[] | undefined {
  const out: TracingSelector[] = [];
  const fields: Fields[] = [];
  let ok = true;
  for (const item of list.list() ?? []) {
    const f: Fields | undefined = item.map(SELECTOR_FIELDS);
    if (!f) {
      ok = false;
      continue;
    }
    for (const name of f.names())
      if (Object.hasOwn(UNSUPPORTED_SELECTOR_FIELDS, name))
        f.get(name)?.unsupported(UNSUPPORTED_SELECTOR_FIELDS[name] ?? "");
    const all = <T>(name: string, read: (v: Val, tr: Translation) => T | undefined): T[] => {
      const xs = (f.get(name)?.list() ?? []).map((v) => read(v, tr));
      if (xs.some((x) => x === undefined)) ok = false;
      return xs.filter((x): x is T => x !== undefined);
    };
    out.push({
      path: item.path,
      matchArgs: all("matchArgs", (v) => readMatchArg(v, tr, declared)),
      matchBinaries: all("matchBinaries", readBinaries),
      matchParentBinaries: all("matchParentBinaries", readBinaries),
      matchPIDs: all("matchPIDs", readPids),
      matchNamespaces: all("matchNamespaces", readNamespaces),
      matchCapabilities: all("matchCapabilities", readCapabilities),
      actions: all("matchActions", (a) => readAction(a, tr)),
    });
    fields.push(f);
  }
  // Override selectors are served by the fanotify responder, which checks every selector of the
  // probe in order (the first that matches decides): what it cannot check is refused.
  const overrides = (s: TracingSelector): boolean => s.actions.some((a) => a.action === "Override");
  if (tr.fanotify && out.some(overrides))
    out.forEach((s, i) => {
      const kill = s.actions.some((a) => a.action === "Sigkill" || a.action === "Signal");
      if (overrides(s) && kill) {
        fields[i]?.get("matchActions")?.unsupported(OVERRIDE_WITH_KILL);
        ok = false;
      }
      if (s.matchCapabilities.length > 0) {
        fields[i]?.get("matchCapabilities")?.unsupported(OVERRIDE_WITH_CAPS);
        ok = false;
      }
      if (s.matchArgs.some((m) => m.kind === "suffix")) {
        fields[i]?.get("matchArgs")?.unsupported(POSTFIX_WITH_OVERRIDE);
        ok = false;
      }
    });
  // matchParentBinaries and followForks are the syscall guard's (process masks learnt at exec and
  // fork, runtime/enforce/kill-prog.ts): refused on hooks it does not serve.
  const guardOnly = !tr.attach.every(
    (a) => /^syscalls:sys_enter_/.test(a.tracepoint) && a.guard === undefined,
  );
  out.forEach((_, i) => {
    const s = out[i] as TracingSelector;
    const where = guardOnly
      ? `${tr.functionName} is not served by the syscall guard`
      : tr.fanotify && out.some(overrides)
        ? "this probe's Override is served by the fanotify responder, which checks its selectors in order"
        : undefined;
    if (where === undefined) return;
    if (s.matchParentBinaries.length > 0) {
      fields[i]
        ?.get("matchParentBinaries")
        ?.unsupported(
          `matchParentBinaries is served on syscall hooks by the syscall guard only, and ${where}`,
        );
      ok = false;
    }
    if (s.matchPIDs.some((p) => p.followForks)) {
      fields[i]
        ?.get("matchPIDs")
        ?.unsupported(`followForks is served on syscall hooks by the syscall guard only, and ${where}`);
      ok = false;
    }
  });
  if (list.kind !== "list") ok = false;
  return ok ? out : undefined;
}
