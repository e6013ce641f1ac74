/**
 * Which controller a file given to `membrane apply|delete -f` goes to, from the
 * kinds of its documents, read once with the bounded YAML reader of the policy
 * parser: tracing policies, Gateway API / Ingress, Services / EndpointSlices,
 * or network policies (the default, also for a file that does not parse: the
 * policy parser then names the syntax error with its line). A file that mixes
 * a family with other kinds is refused, naming the file: a file is applied
 * whole or not at all, and the families go to different controllers.
 */
import { isMap } from "yaml";
import { MembraneError } from "../../errors.js";
import { isGatewayKind } from "../../gateway/parse.js";
import { isLbKind } from "../../lb/parse.js";
import { parseAllBounded } from "../../policy/api/yaml-bounded.js";
import { isTracingKind } from "../../runtime/policy/parse.js";

export type FileFamily = "policy" | "tracing" | "gateway" | "lb";

const FAMILIES: readonly {
  readonly family: Exclude<FileFamily, "policy">;
  readonly is: (kind: string) => boolean;
  readonly what: string;
  readonly hint: string;
}[] = [
  {
    family: "tracing",
    is: isTracingKind,
    what: "TracingPolicy documents",
    hint: "put tracing policies and network policies in separate files",
  },
  {
    family: "gateway",
    is: isGatewayKind,
    what: "Gateway API / Ingress documents",
    hint: "put Gateway API and Ingress resources in a file of their own",
  },
  {
    family: "lb",
    is: isLbKind,
    what: "Service/EndpointSlice documents",
    hint: "put Services and EndpointSlices in a file of their own, policies in another",
  },
];

/** The kinds of the documents that parse (a document with a syntax error is left to the parser that reports it). */
function documentKinds(text: string, file: string): string[] {
  let docs;
  try {
    docs = parseAllBounded(text, file).docs;
  } catch {
    return []; // over the size limit: the policy parser says so
  }
  // The kind is read from the document's tree, not from toJS(): that would expand aliases (an alias
  // bomb is the policy parser's to refuse, naming the limit).
  return docs
    .filter((d) => d.errors.length === 0 && isMap(d.contents))
    .map((d) => {
      const k = d.get("kind");
      return typeof k === "string" ? k : "";
    });
}

export function fileFamily(text: string, file: string): FileFamily {
  const kinds = documentKinds(text, file);
  for (const f of FAMILIES) {
    const n = kinds.filter(f.is).length;
    if (n === 0) continue;
    if (n < kinds.length)
      throw new MembraneError("CLI_USAGE", `Cannot apply ${file}: it mixes ${f.what} with other kinds`, {
        hint: f.hint,
      });
    return f.family;
  }
  return "policy";
}
