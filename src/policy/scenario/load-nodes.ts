/**
 * A scenario's `nodes:` — the other nodes of the cluster, by underlay address,
 * with their labels (what fromNodes/toNodes select a remote node by):
 *
 *   nodes:
 *     - {ip: 192.0.2.1, labels: {role: web}}
 *   queries:
 *     - {from: "remote-node:192.0.2.1", to: db, proto: TCP, port: 5432, expect: allow}
 *
 * A `remote-node:<ip>` peer not listed here is a node without labels.
 */
import { parseAddr } from "../../labels/cidr.js";
import { nodeLabelSet } from "../../labels/node.js";
import type { Field } from "./fields.js";

export interface ScenarioNode {
  readonly ip: string;
  readonly labels: Readonly<Record<string, string>>;
}

export function readNodes(f: Field | undefined): ScenarioNode[] {
  const out: ScenarioNode[] = [];
  const seen = new Set<string>();
  for (const nf of f?.seq() ?? []) {
    const m = nf.map(["ip", "labels"]);
    if (!m) continue;
    const ipField = m.get("ip");
    if (!ipField) {
      nf.issue(`missing required field "ip"`);
      continue;
    }
    const ip = ipField.str();
    if (ip === undefined) continue;
    if (parseAddr(ip) === undefined) {
      ipField.issue(`"${ip}" is not an IP address`);
      continue;
    }
    if (seen.has(ip)) {
      ipField.issue(`node address ${ip} is listed twice`);
      continue;
    }
    seen.add(ip);
    const labelsField = m.get("labels");
    const labels = labelsField?.stringMap() ?? {};
    try {
      nodeLabelSet(labels);
    } catch (e) {
      labelsField?.issue(e instanceof Error ? e.message : String(e));
      continue;
    }
    out.push({ ip, labels });
  }
  return out;
}
