/**
 * What every probe kind of a TracingPolicy (kprobes, tracepoints, uprobes)
 * reads the same way: its `args[]` (checked against what the hook's
 * translation can read) and its message, tags and selectors.
 *
 *   probe fields + Translation --readCommon--> TracingProbe (or undefined, problems reported)
 */
import type { Fields, Val } from "../../policy/api/fields.js";
import { readSelectors } from "./selectors.js";
import { type Translation, typeFits } from "./translation.js";
import type { ProbeArg, TracingProbe } from "./types.js";

export const ARG_FIELDS = [
  "index",
  "type",
  "label",
  "sizeArgIndex",
  "returnCopy",
  "maxData",
  "resolve",
  "btfType",
  "btfTypeModule",
  "source",
] as const;

const UNSUPPORTED_ARG: readonly string[] = [
  "sizeArgIndex",
  "maxData",
  "resolve",
  "btfType",
  "btfTypeModule",
  "source",
];

export function readArgs(
  f: Fields,
  tr: Translation | undefined,
): { args: ProbeArg[]; declared: Map<number, string> } {
  const args: ProbeArg[] = [];
  const declared = new Map<number, string>();
  for (const a of f.get("args")?.list() ?? []) {
    const af = a.map(ARG_FIELDS);
    if (!af) continue;
    for (const n of UNSUPPORTED_ARG)
      if (af.has(n)) af.get(n)?.unsupported(`${n} is not supported by Membrane's enforcer`);
    if (af.get("returnCopy")?.bool() === true)
      af.get("returnCopy")?.unsupported("returnCopy is not supported");
    const idxVal = af.need("index");
    const index = idxVal?.int(0, 15);
    const typeVal = af.need("type");
    const type = typeVal?.str();
    const label = af.get("label")?.str();
    if (index === undefined || type === undefined) continue;
    if (tr) {
      const have = tr.argTypes.get(index);
      if (have === undefined)
        // Declared for reporting only: accepted, said aloud; a matchArgs on it is refused (selectors.ts).
        idxVal?.warn(
          `argument ${index} of ${tr.functionName} cannot be read on this kernel (readable: ${[...tr.argTypes.keys()].join(", ") || "none"}); events report it as absent`,
        );
      else if (!typeFits(type, have))
        typeVal?.unsupported(
          `type ${JSON.stringify(type)} cannot be read from argument ${index} of ${tr.functionName}, which is ${have === "string" ? "a string (path)" : have === "sock" ? "a socket" : have === "sockaddr" ? "a sockaddr" : "an integer"}`,
        );
    }
    declared.set(index, type);
    args.push({ index, type, label });
  }
  return { args, declared };
}

export function readCommon(
  v: Val,
  f: Fields,
  hook: TracingProbe["hook"],
  tr: Translation | undefined,
): TracingProbe | undefined {
  const { args, declared } = readArgs(f, tr);
  const message = f.get("message")?.str();
  const tags = f.get("tags")?.strings() ?? [];
  const selVal = f.get("selectors");
  const selectors = selVal && tr ? readSelectors(selVal, tr, declared) : [];
  if (!tr || !selectors) return undefined;
  return {
    path: v.path,
    hook,
    functionName: tr.functionName,
    attach: tr.attach,
    ...(tr.connect ? { connect: tr.connect } : {}),
    args,
    selectors,
    message,
    tags,
    ...(tr.fanotify ? { fanotify: tr.fanotify } : {}),
  };
}
