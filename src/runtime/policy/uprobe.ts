/**
 * `spec.uprobes[]`: a function of a user-space binary or library, hooked at
 * its entry. Tetragon attaches a uprobe to each symbol; so do we, through
 * bpftrace's `uprobe:PATH:SYMBOL` (runtime/enforce/script.ts): the kernel has
 * uprobes (breakpoints in the file's pages, so every process running that
 * file hits them, whatever its mount namespace) even without kprobes.
 *
 *   uprobes[i] {path, symbols[], args[], selectors[]} --readUprobes--> one TracingProbe per symbol
 *
 * Arguments are the function's integer registers (x86-64 System V: indexes
 * 0..5 are rdi, rsi, rdx, rcx, r8, r9); an argument declared `string` is read
 * as a NUL-terminated string from the process's memory at that pointer,
 * anything of an integer type as the register itself. Kernel types (file,
 * path, sock...) do not exist in user space and are refused at their field.
 *
 * The path is the file as the agent's mount namespace sees it: an endpoint
 * that shares the node's filesystem (membrane endpoints are network
 * namespaces) runs the same inode. A container with its own root filesystem
 * needs the path of its copy as the node sees it (Tetragon's /procRoot
 * paths are not translated).
 */
import type { Fields, Val } from "../../policy/api/fields.js";
import { readCommon } from "./probe.js";
import type { ArgKind, Translation } from "./translation.js";
import type { ArgSource, TracingProbe } from "./types.js";

export const UPROBE_FIELDS = [
  "path",
  "symbols",
  "args",
  "selectors",
  "message",
  "tags",
  // Tetragon fields refused with a reason:
  "offsets",
  "addrs",
  "refCtrOffsets",
  "btfPath",
  "data",
  "return",
  "returnArg",
  "binaryDigests",
  "ignore",
] as const;

const REFUSED: Record<string, string> = {
  offsets: "offsets are not supported: name the function in symbols",
  addrs: "addrs are not supported: name the function in symbols",
  refCtrOffsets: "refCtrOffsets (USDT semaphores) are not supported",
  btfPath: "btfPath is not supported: arguments are read from registers by their declared type",
  data: "data is not supported by Membrane's enforcer",
  returnArg: "return probes (uretprobes) are not supported: Membrane attaches at the function's entry",
  binaryDigests: "binaryDigests are not supported yet: the uprobe would attach whatever the file's content",
  ignore: "ignore (digestVerificationFailure) goes with binaryDigests, which are not supported",
};

/** The registers a uprobe reads its arguments from (x86-64 System V: six integer arguments). */
export const UPROBE_MAX_ARGS = 6;

/**
 * A path bpftrace can take unquoted in a probe name and a shell never
 * expands: absolute, no `..`, no `:` (the probe's separator), no space,
 * quote, glob or control character.
 */
const SAFE_PATH = /^\/[A-Za-z0-9._+@/-]{1,4095}$/;
/** A C (or mangled C++) function name: no wildcard, no offset, nothing bpftrace would read as syntax. */
const SAFE_SYMBOL = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;

export function checkUprobePath(p: string): string | undefined {
  if (!SAFE_PATH.test(p))
    return `path ${JSON.stringify(p)} must be an absolute file path of letters, digits and . _ + @ - / (no spaces, quotes, ':' or wildcards)`;
  if (p.split("/").some((c) => c === ".." || c === "."))
    return `path ${JSON.stringify(p)} must not contain "." or ".." components`;
  if (p.endsWith("/")) return `path ${JSON.stringify(p)} names a directory, not a binary`;
  return undefined;
}

export function checkUprobeSymbol(s: string): string | undefined {
  return SAFE_SYMBOL.test(s)
    ? undefined
    : `symbol ${JSON.stringify(s)} must be a function name (letters, digits and _, not starting with a digit; no wildcard or offset)`;
}

/** The declared types by index, read quietly (readArgs reports what is wrong with them). */
function declaredTypes(f: Fields): Map<number, string> {
  const out = new Map<number, string>();
  const list = f.get("args");
  if (list?.kind !== "list") return out;
  for (const a of list.list() ?? []) {
    const i = a.peek("index");
    const t = a.peek("type");
    if (i?.kind === "number" && t?.kind === "string") out.set(Number(i.strOrNum()), String(t.str()));
  }
  return out;
}

/** What a register argument is read as: a user string for `string`, the register for the rest. */
function kindOf(type: string | undefined): ArgKind {
  return type === "string" ? "string" : "int";
}

function translation(path: string, symbol: string, declared: Map<number, string>): Translation {
  const args = new Map<number, ArgSource>();
  const argTypes = new Map<number, ArgKind>();
  for (let i = 0; i < UPROBE_MAX_ARGS; i++) {
    const kind = kindOf(declared.get(i));
    argTypes.set(i, kind);
    args.set(i, { field: `arg${i}`, kind: kind === "string" ? "ustr" : "int" });
  }
  return {
    functionName: symbol,
    attach: [{ tracepoint: `uprobe:${path}:${symbol}`, uprobe: { path, symbol }, args }],
    argTypes,
  };
}

/** The probes of one `uprobes[]` entry: one per symbol, all sharing its args and selectors. */
export function readUprobe(v: Val): TracingProbe[] {
  const f = v.map(UPROBE_FIELDS);
  if (!f) return [];
  for (const n of f.names()) if (Object.hasOwn(REFUSED, n)) f.get(n)?.unsupported(REFUSED[n] ?? "");
  if (f.get("return")?.bool() === true)
    f.get("return")?.unsupported(
      "return probes (uretprobes) are not supported: Membrane attaches at the function's entry",
    );
  const pathVal = f.need("path");
  const path = pathVal?.str();
  const badPath = path === undefined ? undefined : checkUprobePath(path);
  if (badPath) pathVal?.error(badPath);
  // offsets and addrs stand instead of symbols in Tetragon (refused above, once).
  const symVal = f.has("offsets") || f.has("addrs") ? f.get("symbols") : f.need("symbols");
  const items = symVal?.list() ?? [];
  if (symVal?.kind === "list" && items.length === 0) symVal.error("symbols must name at least one function");
  const good: string[] = [];
  for (const sv of items) {
    const s = sv.str();
    if (s === undefined) continue;
    const bad = checkUprobeSymbol(s);
    if (bad) sv.error(bad);
    else if (good.includes(s)) sv.error(`symbol ${JSON.stringify(s)} is listed twice`);
    else good.push(s);
  }
  const declared = declaredTypes(f);
  if (path === undefined || badPath) {
    // Still read args and selectors, for their own problems.
    readCommon(v, f, "uprobe", undefined);
    return [];
  }
  // Read once (problems reported once) against the first symbol; the others share what it read.
  const first = readCommon(v, f, "uprobe", translation(path, good[0] ?? "main", declared));
  if (!first || good.length === 0) return [];
  return good.map((s) => {
    const tr = translation(path, s, declared);
    return { ...first, functionName: tr.functionName, attach: tr.attach };
  });
}
