/**
 * Which authenticated pairs go (src/auth/judge.ts), case by case, with real SVIDs from real CAs:
 * an identity that no longer exists, a revoked one, an expired SVID, the policy no longer requiring
 * authentication (on either end's rule), a root dropped from the bundle; a pair whose facts all
 * hold stays. Pure: no kernel.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import { authRequired, judgePairs, type Facts, type JudgedPair } from "../../src/auth/judge.js";
import type { DatapathState, PolicySegment } from "../../src/datapath/types.js";
import { SvidProvider } from "../../src/spiffe/provider.js";

const seg = (identity: number, action: PolicySegment["action"]): PolicySegment => ({ identity, proto: 6, lo: 80, hi: 80, action, ruleId: 1 }); // prettier-ignore
const state = (ingress: PolicySegment[], egress: PolicySegment[] = []): DatapathState => ({
  ipcache: [],
  rules: [],
  hostIdentity: 1,
  endpoints: [{ id: 1, name: "server", hostIfname: "x", identity: 301, ingress: { enforced: true, segments: ingress }, egress: { enforced: false, segments: egress } }], // prettier-ignore
});

describe("revocation: which pairs go", () => {
  test("each reason, alone, removes the pair; with every fact holding it stays", async () => {
    const a = await SvidProvider.start({ trustDomain: "a.test", logger: pino({ level: "silent" }), timers: false }); // prettier-ignore
    const other = await SvidProvider.start({ trustDomain: "a.test", logger: pino({ level: "silent" }), timers: false }); // prettier-ignore
    try {
      const peer = await a.ensure(300);
      const now = Date.now();
      const pair: JudgedPair = { src: 300, dst: 301, expiresMs: now + 60_000, chains: [[...peer.chain]] };
      const base: Facts = { live: new Set([300, 301]), revoked: new Set(), state: state([seg(300, "auth")]), bundle: a.bundle(), trustDomain: "a.test", now }; // prettier-ignore
      assert.deepEqual(judgePairs([pair], base), [], "every fact holds: the pair stays");
      const cases: { name: string; facts: Partial<Facts>; pair?: Partial<JudgedPair>; why: RegExp }[] = [
        {
          name: "the source identity exists nowhere",
          facts: { live: new Set([301]) },
          why: /identity 300 no longer exists/,
        },
        {
          name: "the destination is revoked",
          facts: { revoked: new Set([301]) },
          why: /identity 301 is revoked/,
        },
        { name: "an SVID expired", facts: {}, pair: { expiresMs: now - 1 }, why: /expired/ },
        { name: "the rule no longer requires authentication", facts: { state: state([seg(300, "allow")]) }, why: /policy no longer requires/ }, // prettier-ignore
        {
          name: "no rule selects the pair any more",
          facts: { state: state([]) },
          why: /policy no longer requires/,
        },
        { name: "the bundle no longer trusts the root that signed the peer", facts: { bundle: other.bundle() }, why: /no longer trusted/ }, // prettier-ignore
      ];
      for (const c of cases) {
        const got = judgePairs([{ ...pair, ...c.pair }], { ...base, ...c.facts });
        assert.equal(got.length, 1, c.name);
        assert.match(got[0]?.why ?? "", c.why, c.name);
      }
      // Unknown policy (not applied yet): nothing is judged on it.
      assert.deepEqual(judgePairs([pair], { ...base, state: undefined }), []);
    } finally {
      a.stop();
      other.stop();
    }
  });

  test("a requirement on either end counts: the destination's ingress, the source's egress, a wildcard peer", () => {
    assert.equal(authRequired(state([seg(300, "auth")]), 300, 301), true);
    assert.equal(authRequired(state([seg(0, "auth")]), 999, 301), true, "any peer");
    assert.equal(authRequired(state([seg(302, "auth")]), 300, 301), false, "another peer's rule");
    const egress = state([], [seg(400, "auth")]);
    assert.equal(authRequired(egress, 301, 400), true, "the endpoint's own egress rule");
    assert.equal(authRequired(egress, 400, 301), false, "egress rules judge the endpoint as source only");
  });
});
