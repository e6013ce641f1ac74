/**
 * `cilium.io/v1alpha1` TracingPolicy and TracingPolicyNamespaced, read the
 * way Tetragon defines them (test/runtime/policy/crd-fields.test.ts checks
 * that every field read here is one of Tetragon's at that place), validated whole: every problem with its file, line and field
 * path; a file with any problem yields nothing.
 *
 *   text --readDocuments--> docs --readPolicy--> TracingPolicy[]   (or one MembraneError)
 *
 * Codes: TRACING_POLICY_INVALID (wrong), TRACING_POLICY_UNSUPPORTED (valid
 * Tetragon that this kernel cannot serve: lsmhooks, usdts, unmapped kernel
 * functions, Override, ...), TRACING_POLICY_UNSAFE (a kill not narrowed,
 * safety.ts).
 */
import { type ErrorCode, type Issue, MembraneError } from "../../errors.js";
import type { Fields, Problem, Val } from "../../policy/api/fields.js";
import { Selector } from "../../labels/selector.js";
import { scopeSubject, readSelector } from "../../policy/api/selector.js";
import { checkLabelName, checkSubdomain } from "../../policy/api/names.js";
import { booleanAnnotation } from "../../policy/api/metadata.js";
import { readDocuments } from "../../policy/api/yaml-doc.js";
import { connectProblems } from "./connect.js";
import { readCommon } from "./probe.js";
import { readUprobe } from "./uprobe.js";
import { ALLOW_UNSAFE_KILL_ANNOTATION, safetyProblems } from "./safety.js";
import { syscallName, knownSyscalls } from "./syscalls.js";
import {
  kernelFunctions,
  knownTracepoints,
  type Translation,
  translateKernelFunction,
  translateSyscall,
  translateTracepoint,
} from "./translation.js";
import {
  TRACING_API_VERSION,
  type TracingPolicy,
  type TracingPolicyKind,
  type TracingProbe,
} from "./types.js";

export { ARG_FIELDS } from "./probe.js";
export { UPROBE_FIELDS } from "./uprobe.js";

export const TRACING_KINDS: readonly TracingPolicyKind[] = ["TracingPolicy", "TracingPolicyNamespaced"];

export const DOC_FIELDS = ["apiVersion", "kind", "metadata", "spec"] as const;
export const METADATA_FIELDS = [
  "name",
  "namespace",
  "labels",
  "annotations",
  "uid",
  "resourceVersion",
  "creationTimestamp",
  "generation",
  "managedFields",
] as const;
export const SPEC_FIELDS = [
  "kprobes",
  "tracepoints",
  "uprobes",
  "podSelector",
  // Tetragon fields refused with a reason:
  "usdts",
  "lsmhooks",
  "fentries",
  "lists",
  "enforcers",
  "loader",
  "options",
  "containerSelector",
] as const;
export const KPROBE_FIELDS = [
  "call",
  "syscall",
  "args",
  "selectors",
  "message",
  "tags",
  "return",
  "returnArg",
  "returnArgAction",
  "data",
  "ignore",
] as const;
export const TRACEPOINT_FIELDS = [
  "subsystem",
  "event",
  "args",
  "selectors",
  "message",
  "tags",
  "raw",
] as const;

const UNSUPPORTED_SPEC: Record<string, string> = {
  usdts: "usdts are not supported by Membrane's enforcer",
  lsmhooks:
    "lsmhooks need BPF LSM programs, which this kernel refuses (EPERM); use a kprobe from the translation table (security_file_open, security_bprm_check, ...)",
  fentries:
    "fentries need fentry programs, which this kernel refuses (EPERM); use kprobes with syscall: true or tracepoints",
  lists: "lists are not supported yet: name each call in its own kprobe",
  enforcers:
    "enforcers (NotifyEnforcer) need Tetragon's kprobe enforcer programs; use Sigkill or Signal in matchActions",
  loader: "loader events are not supported",
  options: "options are not supported",
  containerSelector:
    "containerSelector is not supported: Membrane scopes policies to endpoints with podSelector",
};

export function isTracingKind(k: string | undefined): k is TracingPolicyKind {
  return k !== undefined && (TRACING_KINDS as readonly string[]).includes(k);
}

/** Parses and validates every document of `text`; throws one MembraneError listing every problem. */
export function parseTracingPolicies(text: string, file: string): TracingPolicy[] {
  const { docs, syntax } = readDocuments(text, file);
  if (syntax.length > 0) throw rejection(file, "POLICY_YAML_SYNTAX", syntax);
  const out: TracingPolicy[] = [];
  const problems: Problem[] = [];
  const unsafe: Problem[] = [];
  for (const d of docs) {
    const p = readPolicy(d.root);
    for (const x of d.ctx.problems) problems.push(x);
    const cp = p && d.ctx.problems.length === 0 ? connectProblems(p) : [];
    for (const c of cp) problems.push({ file, line: d.root.line, ...c });
    if (p && d.ctx.problems.length === 0 && cp.length === 0) {
      for (const s of safetyProblems(p))
        unsafe.push({ file, line: d.root.line, path: s.path, message: s.message, unsupported: false });
      out.push(p);
    }
  }
  if (problems.length > 0)
    throw rejection(
      file,
      problems.every((p) => p.unsupported) ? "TRACING_POLICY_UNSUPPORTED" : "TRACING_POLICY_INVALID",
      problems,
    );
  if (unsafe.length > 0) throw rejection(file, "TRACING_POLICY_UNSAFE", unsafe);
  const seen = new Set<string>();
  for (const p of out) {
    const key = `${p.kind}/${p.namespace ?? ""}/${p.name}`;
    if (seen.has(key))
      throw new MembraneError(
        "TRACING_POLICY_INVALID",
        `Cannot apply ${file}: ${p.kind} ${p.name} appears twice`,
      );
    seen.add(key);
  }
  return out;
}

function rejection(file: string, code: ErrorCode, problems: readonly Problem[]): MembraneError {
  const issues: Issue[] = problems
    .slice(0, 100)
    .map((p) => ({ file: p.file, line: p.line, path: p.path, message: p.message }));
  const n = problems.length;
  return new MembraneError(code, `Cannot apply ${file}: ${n} problem${n === 1 ? "" : "s"}`, {
    location: {
      file,
      line: problems[0]?.line ?? 1,
      ...(problems[0]?.path ? { path: problems[0].path } : {}),
    },
    issues,
    hint:
      code === "TRACING_POLICY_UNSUPPORTED"
        ? "nothing from this file was applied; the fields listed above cannot be enforced on this kernel (see the translation table in src/runtime/policy/translation.ts)"
        : code === "TRACING_POLICY_UNSAFE"
          ? `nothing from this file was applied; narrow the kill, or set the annotation ${ALLOW_UNSAFE_KILL_ANNOTATION}: "true" if it is meant`
          : "nothing from this file was applied; fix every problem listed above and apply the file again",
  });
}

function readPolicy(root: Val): TracingPolicy | undefined {
  const doc = root.map(DOC_FIELDS);
  if (!doc) return undefined;
  const kindVal = doc.need("kind");
  const kind = kindVal?.str();
  if (kind === undefined || !kindVal) return undefined;
  if (!isTracingKind(kind))
    return kindVal.error(
      `kind ${JSON.stringify(kind)} is not a tracing policy (${TRACING_KINDS.join(", ")})`,
    );
  const api = doc.need("apiVersion");
  const apiStr = api?.str();
  if (apiStr !== undefined && apiStr !== TRACING_API_VERSION)
    api?.error(`apiVersion of a ${kind} must be ${TRACING_API_VERSION}, not ${JSON.stringify(apiStr)}`);
  const meta = readMeta(doc, kind);
  const spec = doc.need("spec")?.map(SPEC_FIELDS);
  if (!spec || !meta) return undefined;
  for (const name of spec.names())
    if (Object.hasOwn(UNSUPPORTED_SPEC, name)) spec.get(name)?.unsupported(UNSUPPORTED_SPEC[name] ?? "");
  const probes: TracingProbe[] = [];
  for (const k of spec.get("kprobes")?.list() ?? []) {
    const p = readKprobe(k);
    if (p) probes.push(p);
  }
  for (const t of spec.get("tracepoints")?.list() ?? []) {
    const p = readTracepoint(t);
    if (p) probes.push(p);
  }
  for (const u of spec.get("uprobes")?.list() ?? []) probes.push(...readUprobe(u));
  if (
    !spec.has("kprobes") &&
    !spec.has("tracepoints") &&
    !spec.has("uprobes") &&
    spec.names().every((n) => !Object.hasOwn(UNSUPPORTED_SPEC, n))
  )
    spec.self.error("spec must have kprobes, tracepoints or uprobes");
  const psVal = spec.get("podSelector");
  let podSelector = psVal ? readSelector(psVal) : undefined;
  // A namespaced policy sees only its namespace's endpoints, whatever its podSelector says.
  if (kind === "TracingPolicyNamespaced")
    podSelector = scopeSubject(podSelector ?? Selector.ALL, meta.namespace);
  return {
    kind,
    name: meta.name,
    namespace: meta.namespace,
    podSelector,
    allowUnsafeKill: meta.allowUnsafeKill,
    probes,
  };
}

function readMeta(
  doc: Fields,
  kind: TracingPolicyKind,
): { name: string; namespace: string | undefined; allowUnsafeKill: boolean } | undefined {
  const m = doc.need("metadata")?.map(METADATA_FIELDS);
  if (!m) return undefined;
  const nameVal = m.need("name");
  const name = nameVal?.str();
  const badName = name === undefined ? undefined : checkSubdomain(name);
  if (badName) nameVal?.error(badName);
  const nsVal = m.get("namespace");
  let namespace: string | undefined = kind === "TracingPolicyNamespaced" ? "default" : undefined;
  if (nsVal && kind === "TracingPolicy")
    nsVal.warn("a TracingPolicy is cluster-wide: metadata.namespace is ignored; use TracingPolicyNamespaced");
  else if (nsVal) {
    namespace = nsVal.str();
    const bad = namespace === undefined ? undefined : checkLabelName(namespace);
    if (bad) nsVal.error(bad);
  }
  for (const [, v] of m.get("labels")?.entries() ?? []) if (v.kind !== "null") v.str();
  const allowUnsafeKill = booleanAnnotation(m, ALLOW_UNSAFE_KILL_ANNOTATION);
  if (name === undefined || badName) return undefined;
  return { name, namespace, allowUnsafeKill };
}

function readKprobe(v: Val): TracingProbe | undefined {
  const f = v.map(KPROBE_FIELDS);
  if (!f) return undefined;
  const callVal = f.need("call");
  const call = callVal?.str();
  const syscall = f.get("syscall")?.bool() ?? false;
  if (f.get("return")?.bool() === true)
    f.get("return")?.unsupported("return probes are not supported: Membrane attaches at syscall entry");
  for (const n of ["returnArg", "returnArgAction", "data"] as const)
    if (f.has(n)) f.get(n)?.unsupported(`${n} is not supported by Membrane's enforcer`);
  if (f.get("ignore")) f.get("ignore")?.map(["callNotFound"]);
  let tr: Translation | undefined;
  if (call !== undefined && callVal) {
    if (call.startsWith("list:"))
      callVal.unsupported("calls from lists are not supported yet: name each call");
    else if (syscall) {
      const name = syscallName(call);
      tr = name === undefined ? undefined : translateSyscall(name);
      if (!tr)
        callVal.unsupported(
          `syscall ${JSON.stringify(call)} is not in Membrane's syscall table (${knownSyscalls().length} syscalls, src/runtime/policy/syscalls.ts)`,
        );
    } else {
      tr = translateKernelFunction(call);
      if (!tr) {
        const sys = syscallName(call);
        callVal.unsupported(
          sys !== undefined && /^(__x64_)?sys_/.test(call) && translateSyscall(sys)
            ? `kernel function ${JSON.stringify(call)} needs a kprobe; it is a system call: add syscall: true`
            : `kernel function ${JSON.stringify(call)} needs a kprobe, which this kernel does not have, and has no tracepoint translation (translated: ${kernelFunctions().join(", ")})`,
        );
      }
    }
  }
  return readCommon(v, f, "kprobe", tr);
}

function readTracepoint(v: Val): TracingProbe | undefined {
  const f = v.map(TRACEPOINT_FIELDS);
  if (!f) return undefined;
  const subsystem = f.need("subsystem")?.str();
  const eventVal = f.need("event");
  const event = eventVal?.str();
  if (f.get("raw")?.bool() === true)
    f.get("raw")?.unsupported("raw tracepoints are not supported; remove raw: true");
  let tr: Translation | undefined;
  if (subsystem !== undefined && event !== undefined) {
    tr = translateTracepoint(subsystem, event);
    if (!tr)
      eventVal?.unsupported(
        `tracepoint ${subsystem}:${event} is not in Membrane's tracepoint table (${knownTracepoints().join(", ")})`,
      );
  }
  return readCommon(v, f, "tracepoint", tr);
}
