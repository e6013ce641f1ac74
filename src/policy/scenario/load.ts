/**
 * Scenario YAML -> Scenario, validating every field. All problems of a file
 * are reported together as one SCENARIO_INVALID error whose issues name
 * file, line and field path.
 */
import { isScalar, Scalar } from "yaml";
import { type Issue, MembraneError, isMembraneError } from "../../errors.js";
import { type PolicyWarning, parsePolicies } from "../api/index.js";
import { capProblems, hiddenCount, shiftLimitError, stoppedIssue } from "../api/limits.js";
import { parseAllBounded } from "../api/yaml-bounded.js";
import type { PolicyResource } from "../types.js";
import { Field, type ReadContext } from "./fields.js";
import { readQueries } from "./load-query.js";
import { readConfig, readEndpoints, readNamespaces, readServices } from "./load-world.js";
import { readNodes } from "./load-nodes.js";
import type { Scenario, ScenarioWorld } from "./types.js";

const TOP_FIELDS = [
  "name",
  "source",
  "category",
  "notes",
  "config",
  "namespaces",
  "services",
  "endpoints",
  "nodes",
  "policies",
  "queries",
] as const;
export interface LoadOptions {
  /** `world` mode (policy trace --endpoints): `name` and `queries` are optional. */
  readonly world?: boolean;
}

/**
 * Parses and validates a scenario file's text. Throws MembraneError
 * SCENARIO_INVALID, or INPUT_LIMIT_EXCEEDED past the bounds of
 * policy/api/limits.ts (size, depth, documents; aliases are not followed here).
 */
export function parseScenario(text: string, file: string, opts: LoadOptions = {}): Scenario {
  const { docs, lc: lines, errors, stopped } = parseAllBounded(text, file);
  const ctx: ReadContext = { file, lines, issues: [] };
  for (const e of errors) {
    const issue: Issue = { file, message: e.message.split("\n")[0] ?? e.message };
    if (e.linePos) issue.line = e.linePos[0].line;
    ctx.issues.push(issue);
  }
  const second = docs[1];
  if (second !== undefined && errors.length === 0) {
    ctx.issues.push({
      file,
      line: lines.linePos(second.range[0]).line,
      message: `a scenario file holds one YAML document, not ${docs.length}`,
    });
  }
  if (ctx.issues.length > 0) throw invalid(file, ctx.issues, "the file is not valid YAML", stopped);

  const root = new Field(ctx, docs[0]?.contents ?? null, "", 1);
  const top = root.map(TOP_FIELDS);
  if (!top) throw invalid(file, ctx.issues);
  const opt = (k: string): Field | undefined => top.get(k);
  const req = (k: string): Field | undefined => {
    const f = top.get(k);
    if (!f) root.issue(`missing required field "${k}"`, 1);
    return f;
  };

  const name = (opts.world ? opt("name") : req("name"))?.str({ nonEmpty: true });
  const source = opt("source")?.str();
  const category = opt("category")?.str();
  const notes = opt("notes")?.str();
  const config = readConfig(opt("config"));
  const namespaces = readNamespaces(opt("namespaces"));
  const services = readServices(opt("services"));
  const nodes = readNodes(opt("nodes"));
  const { endpoints, endpointLines } = readEndpoints(opt("endpoints"), config.dualStack === true);
  const queriesField = opts.world ? opt("queries") : req("queries");
  const queries = queriesField ? readQueries(queriesField, endpoints, opts.world === true) : [];
  const warnings: Issue[] = [];
  const policies = readPolicies(opt("policies"), file, config.meshAuth === true, warnings);

  if (ctx.issues.length > 0) throw invalid(file, ctx.issues);
  const world: ScenarioWorld = {
    file,
    config,
    namespaces,
    services,
    endpoints,
    endpointLines,
    policies,
    ...(nodes.length > 0 ? { nodes } : {}),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
  return {
    ...world,
    name: name ?? "",
    ...(source !== undefined ? { source } : {}),
    ...(category !== undefined ? { category } : {}),
    ...(notes !== undefined ? { notes } : {}),
    queries,
  };
}

function invalid(file: string, unsorted: readonly Issue[], why?: string, stopped = false): MembraneError {
  // A capped list from the policies block ends with "... and K more": count those K, list the rest.
  let hidden = 0;
  const listed: Issue[] = [];
  for (const i of unsorted) {
    const k = hiddenCount(i);
    if (k === undefined) listed.push(i);
    else hidden += k;
  }
  const n = listed.length + hidden;
  // In file order (the sort is stable: issues of one line keep their order); the first LIMITS.problems.
  listed.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  const issues = capProblems(listed, file, "problem", hidden);
  if (stopped) issues.push(stoppedIssue(file));
  return new MembraneError(
    "SCENARIO_INVALID",
    `Cannot load scenario file ${file}: ${why ?? (n === 1 ? "1 problem" : `${n} problems`)}`,
    {
      issues,
      hint: "fix the fields named above; the files under examples/ show every field in use",
    },
  );
}

/**
 * Parses the `policies` block scalar. Lines the policy parser reports are
 * relative to the block; they are shifted to lines of the scenario file.
 */
function readPolicies(
  f: Field | undefined,
  file: string,
  meshAuth: boolean,
  warnings: Issue[],
): PolicyResource[] {
  if (!f) return [];
  const text = f.str();
  if (text === undefined || text.trim() === "") return [];
  const offset = blockOffset(f);
  const onWarning = (w: PolicyWarning): void => {
    warnings.push({ file, line: w.line + offset, path: `policies: ${w.path}`, message: w.message });
  };
  try {
    return parsePolicies(text, file, { meshAuth, onWarning }).map((r: PolicyResource) =>
      r.source ? { ...r, source: { file: r.source.file, line: r.source.line + offset } } : r,
    );
  } catch (e) {
    if (!isMembraneError(e)) throw e;
    const shift = (i: Issue): Issue => ({
      ...i,
      file,
      ...(i.line !== undefined ? { line: i.line + offset } : {}),
      path: i.path ? `policies: ${i.path}` : "policies",
    });
    if (e.code === "INPUT_LIMIT_EXCEEDED") throw shiftLimitError(e, file, offset);
    if (e.issues.length > 0) for (const i of e.issues) f.ctx.issues.push(shift(i));
    else
      f.ctx.issues.push(
        shift({ message: e.message, ...(e.location?.line !== undefined ? { line: e.location.line } : {}) }),
      );
    return [];
  }
}

/** Line of the scenario file just before line 1 of the policies text. */
function blockOffset(f: Field): number {
  const n = f.node;
  const line = f.line ?? 1;
  if (isScalar(n) && (n.type === Scalar.BLOCK_LITERAL || n.type === Scalar.BLOCK_FOLDED)) return line;
  return line - 1;
}
