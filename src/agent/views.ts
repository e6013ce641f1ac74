/**
 * The agent's read-only views of the engine for the API (`membrane get identities`,
 * `membrane get ipcache`): computed on request, in one pass.
 */
import { prefixString as prefixText } from "../labels/cidr.js";
import type { PolicyEngine } from "../policy/engine.js";
import { epKey } from "./controllers/validate.js";
import { labelText } from "./flow-lookup.js";
import type { EndpointRecordV1 } from "./records.js";

export interface IdentityView {
  id: number;
  labels: string[];
  endpoints: string[];
}

export interface IpcacheView {
  prefix: string;
  identity: number;
  source: string;
}

export function identitiesView(engine: PolicyEngine, endpoints: Iterable<EndpointRecordV1>): IdentityView[] {
  const byId = new Map<number, string[]>(); // one pass over the endpoints, not one per identity
  for (const e of endpoints) {
    const id = engine.getEndpoint(e.namespace, e.name)?.identity.id;
    if (id === undefined) continue;
    const keys = byId.get(id) ?? byId.set(id, []).get(id);
    keys?.push(epKey(e.namespace, e.name));
  }
  return [...engine.identities()]
    .map((i) => ({ id: i.id, labels: [...i.labels].map(labelText), endpoints: byId.get(i.id) ?? [] }))
    .sort((a, b) => a.id - b.id);
}

export function ipcacheView(engine: PolicyEngine): IpcacheView[] {
  return [...engine.ipcache.entries()].map((e) => ({
    prefix: prefixText(e.prefix),
    identity: e.identity,
    source: e.source,
  }));
}
