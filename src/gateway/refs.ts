/**
 * Cross-namespace references: a route's backendRef (or a Gateway's
 * certificateRef) into another namespace is allowed only when a
 * ReferenceGrant in the target namespace lets the source kind from the
 * source namespace reach that kind (and name, when the grant names one).
 */
import type { ReferenceGrant } from "./model.js";

export interface RefFrom {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
}

export interface RefTo {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace: string;
}

export function refPermitted(grants: readonly ReferenceGrant[], from: RefFrom, to: RefTo): boolean {
  if (from.namespace === to.namespace) return true;
  return grants.some(
    (g) =>
      g.meta.namespace === to.namespace &&
      g.from.some((f) => f.group === from.group && f.kind === from.kind && f.namespace === from.namespace) &&
      g.to.some(
        (t) => t.group === to.group && t.kind === to.kind && (t.name === undefined || t.name === to.name),
      ),
  );
}
