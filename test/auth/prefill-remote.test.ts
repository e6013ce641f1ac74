// Which cross-node pairs are authenticated ahead of their first packet (auth/prefill-remote.ts),
// pure: rules requiring authentication that name an identity whose endpoints live on peer nodes,
// in both directions, one pair per peer node, cluster identities only, minus what is skipped,
// bounded per pass. (For real, across two agents: cross-node.test.ts part 8.)
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MAX_REMOTE_PER_PASS, placementKey, remotePairsToPrefill } from "../../src/auth/prefill-remote.js";
import type { DatapathState, DirectionPolicy } from "../../src/datapath/types.js";

const seg = (identity: number, action: "auth" | "allow") => ({ identity, proto: 6, lo: 80, hi: 80, action }); // prettier-ignore
const dir = (segments: ReturnType<typeof seg>[]): DirectionPolicy => ({ enforced: true, segments }) as unknown as DirectionPolicy; // prettier-ignore
const ep = (identity: number, ingress: ReturnType<typeof seg>[], egress: ReturnType<typeof seg>[] = []) => ({ identity, ingress: dir(ingress), egress: dir(egress) }); // prettier-ignore
const row = (w: { src: number; dst: number; srcNode: string; dstNode: string }): string => `${w.src}>${w.dst}@${w.srcNode}>${w.dstNode}`; // prettier-ignore

describe("cross-node pairs authenticated ahead of their first packet", () => {
  test("which pairs: named remote peers of auth rules, per peer node, both directions", () => {
    const state = {
      endpoints: [
        // server 300 here: ingress from 301 (auth; on n2 and n3), 302 (auth, local only), 0 any (auth),
        // 2 world (auth), 303 (allow, on n2)
        ep(300, [seg(301, "auth"), seg(302, "auth"), seg(0, "auth"), seg(2, "auth"), seg(303, "allow")]), // prettier-ignore
        // client 304 here: egress to 305 (auth, on n2; already authenticated) and 306 (auth, on n3)
        ep(304, [], [seg(305, "auth"), seg(306, "auth")]),
        // an endpoint of another node in the state (not local): ignored
        ep(307, [seg(301, "auth")]),
      ],
    } as unknown as DatapathState;
    const local = new Set([300, 302, 304]);
    const placement = new Map([
      [301, new Set(["n2", "n3"])],
      [303, new Set(["n2"])],
      [305, new Set(["n2"])],
      [306, new Set(["n3"])],
      [2, new Set(["n2"])],
    ]);
    const skip = (w: { src: number; dst: number }): boolean => w.src === 304 && w.dst === 305;
    assert.deepEqual(remotePairsToPrefill(state, local, placement, "n1", skip).map(row), [
      "301>300@n2>n1",
      "301>300@n3>n1",
      "304>306@n1>n3",
    ]);
  });

  test("bounded per pass, and the placement's fingerprint is order-free", () => {
    const many = Array.from({ length: 100 }, (_, i) => seg(1000 + i, "auth"));
    const state = { endpoints: [ep(300, many)] } as unknown as DatapathState;
    const placement = new Map(many.map((s) => [s.identity, new Set(["n2"])]));
    const out = remotePairsToPrefill(state, new Set([300]), placement, "n1", () => false);
    assert.equal(out.length, MAX_REMOTE_PER_PASS);
    assert.equal(out[0]?.src, 1000);
    const a = placementKey(new Map([[301, new Set(["n2", "n3"])], [302, new Set(["n2"])]])); // prettier-ignore
    const b = placementKey(new Map([[302, new Set(["n2"])], [301, new Set(["n3", "n2"])]])); // prettier-ignore
    assert.equal(a, b);
    assert.notEqual(a, placementKey(new Map([[301, new Set(["n2"])]])));
  });
});
