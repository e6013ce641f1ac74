/**
 * policy/api: user policy YAML -> the normalised form the core computes on.
 *
 *   text (multi-document YAML)
 *     --yaml-doc.ts-->  documents with line positions
 *     --cnp.ts / knp.ts (rule, element, peers, ports, l7, ...)-->  PolicyResource[]
 *
 * Kinds: cilium.io/v2 CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy,
 * networking.k8s.io/v1 NetworkPolicy, and `kind: List` holding them. Every
 * problem of every document is collected; a file with any problem is
 * rejected whole with one MembraneError listing them all (file, line, field
 * path, reason; the first LIMITS.problems of them, then a count). Input
 * beyond the bounds of limits.ts (size, depth, documents, alias expansion)
 * is refused with INPUT_LIMIT_EXCEEDED. Nothing here does I/O.
 */
import { type ErrorCode, escapeControls, type Issue, MembraneError, formatIssue } from "../../errors.js";
import type { PolicyKind, PolicyResource } from "../types.js";
import { readCiliumPolicy, CILIUM_FIELDS } from "./cnp.js";
import type { Problem, Val } from "./fields.js";
import { KNP_FIELDS, readNetworkPolicy } from "./knp.js";
import { capProblems, LIMITS, stoppedIssue } from "./limits.js";
import { misplacedDescription } from "./metadata.js";
import { didYouMean } from "./suggest.js";
import { readDocuments } from "./yaml-doc.js";

export interface ParseOptions {
  /** Mutual authentication is enabled on this node; otherwise `authentication.mode` other than disabled is rejected. */
  readonly meshAuth?: boolean;
  /**
   * Called once per warning of an accepted file (file, line, field path,
   * message): things accepted as Kubernetes accepts them that the user
   * should still hear about. Not called when the file is rejected.
   */
  readonly onWarning?: (w: PolicyWarning) => void;
}

export interface PolicyWarning {
  readonly file: string;
  readonly line: number;
  readonly path: string;
  readonly message: string;
}

/** `file:line: path: message`, as the CLI prints a warning (control characters escaped: names come from the file). */
export function warningText(w: PolicyWarning): string {
  return `warning: ${escapeControls(formatIssue(w))}`;
}

const API_VERSIONS: Readonly<Record<string, string>> = {
  CiliumNetworkPolicy: "cilium.io/v2",
  CiliumClusterwideNetworkPolicy: "cilium.io/v2",
  NetworkPolicy: "networking.k8s.io/v1",
  List: "v1",
};

/**
 * Parses and validates every policy document in `text`. Throws a
 * MembraneError (POLICY_YAML_SYNTAX, POLICY_INVALID or POLICY_UNSUPPORTED)
 * whose `issues` name every problem; returns nothing partial.
 */
export function parsePolicies(text: string, file: string, opts: ParseOptions = {}): PolicyResource[] {
  const { docs, syntax, stopped } = readDocuments(text, file);
  if (syntax.length > 0) throw rejection(file, "POLICY_YAML_SYNTAX", syntax, "", stopped);
  const out: PolicyResource[] = [];
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  let badDocs = 0;
  for (const d of docs) {
    readObject(d.root, opts.meshAuth ?? false, out, true);
    if (d.ctx.problems.length > 0) badDocs++;
    // One by one, not push(...): 120,000 problems as arguments overflow the stack.
    for (const p of d.ctx.problems) problems.push(p);
    for (const w of d.ctx.warnings) warnings.push(w);
  }
  if (problems.length > 0) {
    const code: ErrorCode = problems.every((p) => p.unsupported) ? "POLICY_UNSUPPORTED" : "POLICY_INVALID";
    throw rejection(
      file,
      code,
      problems,
      `${badDocs} of ${docs.length} document${docs.length === 1 ? "" : "s"}`,
    );
  }
  // As many as problems are shown (LIMITS.problems), then one line saying how many more.
  for (const w of warnings.slice(0, LIMITS.problems))
    opts.onWarning?.({ file: w.file, line: w.line, path: w.path, message: w.message });
  const more = warnings.length - LIMITS.problems;
  if (more > 0)
    opts.onWarning?.({
      file,
      line: 1,
      path: "",
      message: `${more} more warning${more === 1 ? "" : "s"} not shown`,
    });
  return out;
}

function readObject(v: Val, meshAuth: boolean, out: PolicyResource[], topLevel: boolean): void {
  if (v.kind !== "mapping") {
    v.error("a policy document must be a mapping with apiVersion, kind, metadata and spec");
    return;
  }
  // Look at kind first, then read the document with the fields that kind allows.
  const kindVal = v.peek("kind");
  const kind = kindVal?.kind === "string" ? kindVal.str() : undefined;
  if (kind === undefined || !Object.hasOwn(API_VERSIONS, kind) || (kind === "List" && !topLevel)) {
    const known = Object.keys(API_VERSIONS).filter((k) => k !== "List" || topLevel);
    if (kindVal === undefined) {
      v.error(`field "kind" is required (one of ${known.join(", ")})`);
      return;
    }
    const hint = kind ? didYouMean(kind, known) : undefined;
    kindVal.error(
      kind === undefined
        ? `must be a string naming the kind (one of ${known.join(", ")})`
        : `unsupported kind ${JSON.stringify(kind)}` +
            (hint ? `; did you mean "${hint}"?` : `; Membrane reads ${known.join(", ")}`),
    );
    return;
  }
  const fields = v.map(
    kind === "List"
      ? ["apiVersion", "kind", "metadata", "items"]
      : kind === "NetworkPolicy"
        ? KNP_FIELDS
        : CILIUM_FIELDS,
    kind === "List" ? undefined : misplacedDescription(kind as PolicyKind),
  );
  if (!fields) return;
  const apiVal = fields.need("apiVersion");
  const api = apiVal?.str();
  if (apiVal && api !== undefined && api !== API_VERSIONS[kind]) {
    apiVal.error(`apiVersion of a ${kind} must be ${API_VERSIONS[kind] ?? ""}, not "${api}"`);
  }
  if (kind === "List") {
    for (const item of fields.need("items")?.list() ?? [])
      readObject(item.asResourceRoot(), meshAuth, out, false);
    return;
  }
  const res =
    kind === "NetworkPolicy"
      ? readNetworkPolicy(fields)
      : readCiliumPolicy(fields, kind as "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy", meshAuth);
  if (res) out.push(res);
}

/** One error listing the first LIMITS.problems problems and how many more there were. */
function rejection(
  file: string,
  code: ErrorCode,
  problems: readonly Problem[],
  docs: string,
  stopped = false,
): MembraneError {
  const n = problems.length;
  const what = code === "POLICY_YAML_SYNTAX" ? "YAML syntax error" : "problem";
  const issues = capProblems(
    problems.map((p): Issue => ({ file: p.file, line: p.line, path: p.path, message: p.message })),
    file,
    what,
  );
  if (stopped) issues.push(stoppedIssue(file));
  const count = stopped ? `more than ${n}` : `${n}`;
  return new MembraneError(
    code,
    `Cannot apply ${file}: ${count} ${what}${n === 1 && !stopped ? "" : "s"}` +
      (docs === "" ? "" : ` in ${docs}`),
    {
      location: {
        file,
        line: problems[0]?.line ?? 1,
        ...(problems[0]?.path ? { path: problems[0].path } : {}),
      },
      issues,
      hint:
        code === "POLICY_UNSUPPORTED"
          ? "nothing from this file was applied; remove the unsupported fields listed above"
          : "nothing from this file was applied; fix every problem listed above and apply the file again",
    },
  );
}
