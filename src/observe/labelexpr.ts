/**
 * Kubernetes label selector text, as `hubble observe --label` takes it:
 *
 *   "app=web,tier!=db,k8s:env in (prod, staging),!canary,team"  --parseLabelSelector--> Selector
 *
 * Terms are ANDed: `k=v` / `k==v` (In), `k!=v` (NotIn), `k in (a,b)`,
 * `k notin (a,b)`, `k` (Exists), `!k` (DoesNotExist). A key may carry a
 * source prefix (`k8s:app`, `reserved:host`); without one it matches any source.
 */
import { MembraneError } from "../errors.js";
import { splitSourceKey } from "../labels/label.js";
import { Selector, type Requirement } from "../labels/selector.js";

function splitTerms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim());
}

const KEY = String.raw`[A-Za-z0-9][-A-Za-z0-9_./:]*`;
const SET_RE = new RegExp(String.raw`^(${KEY})\s+(in|notin)\s+\(([^()]*)\)$`);
const CMP_RE = new RegExp(String.raw`^(${KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)$`);
const EXISTS_RE = new RegExp(String.raw`^(!?)\s*(${KEY})$`);

/** Parses selector text; throws FLOW_FILTER_INVALID naming the term. */
export function parseLabelSelector(text: string, where: string): Selector {
  const reqs: Requirement[] = [];
  const req = (k: string, operator: Requirement["operator"], values: string[]): void => {
    const { source, key } = splitSourceKey(k, "any");
    reqs.push({ source, key, operator, values });
  };
  for (const term of splitTerms(text)) {
    let m: RegExpExecArray | null;
    if (term === "") {
      throw new MembraneError(
        "FLOW_FILTER_INVALID",
        `Cannot parse label selector "${text}": it has an empty term`,
        {
          location: { path: where },
          hint: 'Write terms like "app=web", "tier!=db", "env in (a,b)", "!canary", joined by commas.',
        },
      );
    } else if ((m = SET_RE.exec(term))) {
      const values = (m[3] ?? "")
        .split(",")
        .map((v) => v.trim())
        .filter((v) => v !== "");
      req(m[1] as string, m[2] === "in" ? "In" : "NotIn", values);
    } else if ((m = CMP_RE.exec(term))) {
      req(m[1] as string, m[2] === "!=" ? "NotIn" : "In", [m[3] as string]);
    } else if ((m = EXISTS_RE.exec(term))) {
      req(m[2] as string, m[1] === "!" ? "DoesNotExist" : "Exists", []);
    } else {
      throw new MembraneError(
        "FLOW_FILTER_INVALID",
        `Cannot parse label selector term "${term}" in "${text}"`,
        {
          location: { path: where },
          hint: 'Write terms like "app=web", "tier!=db", "env in (a,b)", "!canary", joined by commas.',
        },
      );
    }
  }
  return new Selector(reqs);
}
