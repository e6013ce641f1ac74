/**
 * Every field Membrane reads in a TracingPolicy is one that Tetragon's TracingPolicy and
 * TracingPolicyNamespaced (cilium.io/v1alpha1) define at that place: a policy written for Membrane
 * is one Tetragon's API server accepts. The table is our record of the field names of that API
 * (the contract), by place; both kinds have the same fields at these places.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ARG_FIELDS,
  DOC_FIELDS,
  KPROBE_FIELDS,
  METADATA_FIELDS,
  SPEC_FIELDS,
  TRACEPOINT_FIELDS,
  UPROBE_FIELDS,
} from "../../../src/runtime/policy/parse.js";
import { MATCH_ACTIONS_FIELDS } from "../../../src/runtime/policy/actions.js";
import {
  MATCH_ARGS_FIELDS,
  MATCH_BINARIES_FIELDS,
  MATCH_CAPABILITIES_FIELDS,
  MATCH_NAMESPACES_FIELDS,
  MATCH_PIDS_FIELDS,
  SELECTOR_FIELDS,
} from "../../../src/runtime/policy/selectors.js";

const SELECTOR =
  "label macros matchActions matchArgs matchBinaries matchCapabilities matchCapabilityChanges matchData matchNamespaceChanges matchNamespaces matchPIDs matchParentBinaries matchReturnActions matchReturnArgs matchWorkloads";
const ARG = "btfType btfTypeModule index label maxData resolve returnCopy sizeArgIndex source type";

/** Tetragon's TracingPolicy fields by place (space-separated). */
const TETRAGON: Record<string, string> = {
  document: "apiVersion kind spec",
  spec: "containerSelector enforcers fentries hostSelector kprobes lists loader lsmhooks nodeSelector options podSelector selectorsMacros tracepoints uprobes usdts",
  "kprobes[]": "args call data ignore message return returnArg returnArgAction selectors syscall tags",
  "tracepoints[]": "args event message raw selectors subsystem tags",
  "uprobes[]":
    "addrs args binaryDigests btfPath data ignore message offsets path refCtrOffsets return returnArg selectors symbols tags",
  "kprobes[].args[]": ARG,
  "tracepoints[].args[]": ARG,
  "selectors[]": SELECTOR,
  "matchArgs[]": "args index operator values",
  "matchBinaries[]": "followChildren operator values",
  "matchPIDs[]": "followForks isNamespacePID operator values",
  "matchNamespaces[]": "namespace operator values",
  "matchCapabilities[]": "isNamespaceCapability operator type values",
  "matchActions[]":
    "action argError argFqdn argIndex argNewAddr argNewOffset argNewSymbol argRegs argSig argSock argUrl argValue imaHash kernelStackTrace rateLimit rateLimitScope userStackTrace",
};

const OURS: [string, readonly string[]][] = [
  ["document", DOC_FIELDS.filter((f) => f !== "metadata")],
  ["spec", SPEC_FIELDS],
  ["kprobes[]", KPROBE_FIELDS],
  ["tracepoints[]", TRACEPOINT_FIELDS],
  ["uprobes[]", UPROBE_FIELDS],
  ["kprobes[].args[]", ARG_FIELDS],
  ["tracepoints[].args[]", ARG_FIELDS],
  ["selectors[]", SELECTOR_FIELDS],
  ["matchArgs[]", MATCH_ARGS_FIELDS],
  ["matchBinaries[]", MATCH_BINARIES_FIELDS],
  ["matchPIDs[]", MATCH_PIDS_FIELDS],
  ["matchNamespaces[]", MATCH_NAMESPACES_FIELDS],
  ["matchCapabilities[]", MATCH_CAPABILITIES_FIELDS],
  ["matchActions[]", MATCH_ACTIONS_FIELDS],
];

describe("every TracingPolicy field Membrane reads is one of Tetragon's at that place", () => {
  for (const [place, fields] of OURS)
    test(`${place}: ${fields.join(", ")}`, () => {
      const theirs = new Set((TETRAGON[place] ?? "").split(" "));
      assert.deepEqual(
        fields.filter((f) => !theirs.has(f)),
        [],
      );
    });
  test(`metadata is Kubernetes ObjectMeta (${METADATA_FIELDS.length} fields read)`, () => {
    assert.ok(METADATA_FIELDS.includes("name"));
  });
});
