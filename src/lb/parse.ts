/**
 * `membrane apply -f` of Services and EndpointSlices: YAML text -> LbService and
 * LbSlice records, judged whole. Any problem in any document refuses the file
 * (one error listing every problem with its document and field path), so a
 * refused file changes nothing.
 *
 *   text --yaml--> documents --kind--> parse-service.ts / parse-slice.ts --> {services, slices}
 */
import { parseAllDocuments } from "yaml";
import { MembraneError, type Issue } from "../errors.js";
import { readService } from "./parse-service.js";
import { readSlice } from "./parse-slice.js";
import { DNS_LABEL, DNS_SUBDOMAIN, Reader } from "./reader.js";
import type { LbService, LbSlice } from "./types.js";

export const LB_KINDS: Readonly<Record<string, string>> = {
  Service: "v1",
  EndpointSlice: "discovery.k8s.io/v1",
};

export interface LbResources {
  services: LbService[];
  slices: LbSlice[];
}

const MAX_TEXT = 4 * 1024 * 1024;

export function isLbKind(kind: string): boolean {
  return kind in LB_KINDS;
}

export function parseLbResources(text: string, file: string): LbResources {
  const problems: Issue[] = [];
  if (text.length > MAX_TEXT) throw refused(file, [{ file, message: `larger than ${MAX_TEXT} bytes` }]);
  const out: LbResources = { services: [], slices: [] };
  const names = new Set<string>();
  parseAllDocuments(text).forEach((d, i) => {
    if (!("errors" in d) || d.errors.length > 0) {
      problems.push({
        file,
        path: `document ${i + 1}`,
        message: `not valid YAML (${"errors" in d ? (d.errors[0]?.message ?? "") : "empty"})`,
      });
      return;
    }
    const doc = d.toJS({ maxAliasCount: 100 }) as unknown;
    if (doc === null || doc === undefined) return;
    const r = new Reader(file, i + 1);
    const o = r.map(doc, "(document)", [
      "apiVersion",
      "kind",
      "metadata",
      "spec",
      "status",
      "addressType",
      "ports",
      "endpoints",
    ]);
    if (!o) return void problems.push(...r.problems);
    const kind = r.str(o["kind"], "kind", Object.keys(LB_KINDS));
    if (kind !== undefined && o["apiVersion"] !== LB_KINDS[kind])
      r.report(
        "apiVersion",
        `must be ${LB_KINDS[kind]} for a ${kind}, not ${JSON.stringify(o["apiVersion"])}`,
      );
    const m = r.map(o["metadata"], "metadata", [
      "name",
      "namespace",
      "labels",
      "annotations",
      "uid",
      "resourceVersion",
      "generation",
      "creationTimestamp",
      "ownerReferences",
      "generateName",
    ]);
    const name = m ? r.str(m["name"], "metadata.name") : undefined;
    const namespace =
      m?.["namespace"] === undefined ? "default" : r.str(m["namespace"], "metadata.namespace");
    if (name !== undefined && !(kind === "EndpointSlice" ? DNS_SUBDOMAIN : DNS_LABEL).test(name))
      r.report(
        "metadata.name",
        `"${name}" is not a valid ${kind ?? "resource"} name (lower case a-z, 0-9, -)`,
      );
    if (namespace !== undefined && !DNS_LABEL.test(namespace))
      r.report("metadata.namespace", `"${namespace}" is not a namespace name`);
    const labels = m?.["labels"] === undefined ? {} : (r.strMap(m["labels"], "metadata.labels") ?? {});
    const annotations =
      m?.["annotations"] === undefined ? {} : (r.strMap(m["annotations"], "metadata.annotations") ?? {});
    const key = `${kind}/${namespace}/${name}`;
    if (names.has(key)) r.report("metadata.name", `${kind} ${namespace}/${name} appears twice in the file`);
    names.add(key);
    if (kind === "Service") {
      for (const f of ["addressType", "ports", "endpoints"])
        if (o[f] !== undefined) r.report(f, "is not a Service field (did you mean spec.ports?)");
      const s =
        name !== undefined && namespace !== undefined
          ? readService(r, { namespace, name, labels, annotations }, o["spec"])
          : undefined;
      if (s) out.services.push(s);
    } else if (kind === "EndpointSlice") {
      if (o["spec"] !== undefined)
        r.report("spec", "is not an EndpointSlice field (endpoints and ports are top-level)");
      const s =
        name !== undefined && namespace !== undefined
          ? readSlice(r, { namespace, name, labels }, o)
          : undefined;
      if (s) out.slices.push(s);
    }
    problems.push(...r.problems);
  });
  if (problems.length > 0) throw refused(file, problems);
  return out;
}

function refused(file: string, problems: Issue[]): MembraneError {
  return new MembraneError(
    "SERVICE_INVALID",
    `Cannot apply ${file}: ${problems.length} problem${problems.length === 1 ? "" : "s"}, nothing applied`,
    { issues: problems, hint: "Fix the fields named above; the file is applied whole or not at all." },
  );
}
