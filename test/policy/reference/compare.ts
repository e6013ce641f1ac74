/**
 * Engine versus reference on one random world.
 *
 *   WorldSpec --buildEngine--> engine.decide(q)   \
 *             --buildReference--> referenceDecide(q) --> first query where they differ
 */
import type { PolicyResource } from "../../../src/policy/types.js";
import { referenceDecide, type RefDirection } from "./reference.js";
import {
  buildEngine,
  buildPolicies,
  buildReference,
  describeQuery,
  flowQuery,
  interesting,
  refQuery,
} from "./build.js";
import type { WorldSpec } from "./gen.js";

const view = (d: { verdict: string; reason?: string }): string =>
  d.verdict + (d.reason ? ` (${d.reason})` : "");

/**
 * The first query on which the engine and the reference disagree, described
 * with the engine's trace; undefined when they agree on every query.
 * `mutate` changes the policies the reference sees (used to show that the
 * comparison notices a wrong spec).
 */
export function firstDisagreement(
  w: WorldSpec,
  mutate: (p: PolicyResource[]) => PolicyResource[] = (p) => p,
): string | undefined {
  const policies = buildPolicies(w);
  const { engine, ids } = buildEngine(w, policies);
  const refPolicies = mutate(policies);
  const world = buildReference(w, refPolicies, ids);
  for (const q of w.queries) {
    if (!interesting(q)) continue;
    const want = referenceDecide(world, refPolicies, refQuery(world, q));
    const got = engine.decide(flowQuery(w, q));
    const gotView = { egress: view(got.egress), ingress: view(got.ingress), verdict: got.verdict };
    const wantView = {
      egress: view(want.egress as RefDirection),
      ingress: view(want.ingress),
      verdict: want.verdict,
    };
    if (JSON.stringify(gotView) !== JSON.stringify(wantView)) {
      return (
        `${describeQuery(w, q)}: engine ${JSON.stringify(gotView)}, reference ${JSON.stringify(wantView)}` +
        `\nengine trace:\n  ${engine.trace(flowQuery(w, q)).steps.join("\n  ")}`
      );
    }
  }
  return undefined;
}
