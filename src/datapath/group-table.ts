/**
 * A whole endpoint list -> endpoint parts and the policy groups they share
 * (policy-groups.ts says what a group is and how it is named).
 *
 *   endpoints (by id) --groupKey per direction--> members by key (the smallest id names the group)
 *     --> one GroupPart per key (compiled from its first member's policy)
 *     --> one EndpointParts per endpoint (its chains go to its groups)
 */
import { compileEndpoint, type EndpointContext, type EndpointParts } from "./compile-endpoint.js";
import {
  compileGroup,
  groupKey,
  groupName,
  policyOf,
  type Dir,
  type GroupPart,
  type GroupRef,
} from "./policy-groups.js";
import type { DatapathEndpoint } from "./types.js";

/** The endpoints of one group key. */
export interface Members {
  readonly name: string;
  readonly dir: Dir;
  readonly ids: Set<number>;
}

export const DIRS: readonly Dir[] = ["in", "out"];

export const whereOf = (id: number, dir: Dir): string =>
  `endpoints[id=${id}].${dir === "in" ? "ingress" : "egress"}`;

/** Members by key, from the parts' group references. */
export function membersOf(parts: Iterable<[number, EndpointParts]>): Map<string, Members> {
  const out = new Map<string, Members>();
  for (const [id, part] of parts) {
    for (const dir of DIRS) {
      const g = part.groups[dir];
      if (!g) continue;
      let m = out.get(g.key);
      if (!m) out.set(g.key, (m = { name: g.name, dir, ids: new Set() }));
      m.ids.add(id);
    }
  }
  return out;
}

/** Same groups (names and keys) in both directions. */
export function sameRefs(a: EndpointParts["groups"], b: EndpointParts["groups"]): boolean {
  return (
    a.in?.name === b.in?.name &&
    a.in?.key === b.in?.key &&
    a.out?.name === b.out?.name &&
    a.out?.key === b.out?.key
  );
}

/**
 * Compiles `eps` (checked, sorted by id). `cached(ep)` may hand back the part
 * compiled last for that very endpoint object: its keys are then not computed
 * again, and the part is kept when its groups kept their names.
 */
export function compileGrouped(
  eps: readonly DatapathEndpoint[],
  ctx: EndpointContext,
  cached?: (ep: DatapathEndpoint) => EndpointParts | undefined,
): { parts: Map<number, EndpointParts>; groups: Map<string, GroupPart> } {
  const byKey = new Map<string, { ref: GroupRef; first: DatapathEndpoint; dir: Dir }>();
  const refs: { ep: DatapathEndpoint; prev: EndpointParts | undefined; refs: EndpointParts["groups"] }[] = [];
  for (const ep of eps) {
    const prev = cached?.(ep);
    const r: { in?: GroupRef; out?: GroupRef } = {};
    for (const dir of DIRS) {
      const key = prev ? prev.groups[dir]?.key : groupKey(dir, policyOf(ep, dir));
      if (key === undefined) continue;
      let g = byKey.get(key);
      if (!g) byKey.set(key, (g = { ref: { name: groupName(ep.id, dir), key }, first: ep, dir }));
      r[dir] = g.ref;
    }
    refs.push({ ep, prev, refs: r });
  }
  const groups = new Map<string, GroupPart>();
  for (const [key, g] of byKey) {
    groups.set(
      g.ref.name,
      compileGroup(g.first.id, g.dir, key, policyOf(g.first, g.dir), ctx, whereOf(g.first.id, g.dir)),
    );
  }
  const parts = new Map<number, EndpointParts>();
  for (const { ep, prev, refs: r } of refs) {
    parts.set(ep.id, prev && sameRefs(prev.groups, r) ? prev : compileEndpoint(ep, ctx, r));
  }
  return { parts, groups };
}
