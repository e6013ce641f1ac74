/**
 * redirectCandidates with the endpoint list enforced last (no root): the very
 * same frozen list (what DesiredBuilder hands back when no endpoint changed, as
 * on an ipcache change) has no new redirect, and the node's endpoints are not
 * looked at one by one. A list that is not frozen is still compared endpoint by endpoint.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { redirectCandidates } from "../../src/datapath/bypass.js";
import type { DatapathEndpoint, DatapathState } from "../../src/datapath/types.js";

const ep = (id: number): DatapathEndpoint => ({
  id,
  name: `ep${id}`,
  hostIfname: `veth${id}`,
  ipv4: `10.1.0.${id}`,
  identity: 1000 + id,
  ingress: {
    enforced: true,
    segments: [{ identity: 2000, proto: 6, lo: 80, hi: 80, action: "redirect", ruleId: 1, proxy: "l7" }],
  },
  egress: { enforced: false, segments: [] },
});
const state = (endpoints: DatapathEndpoint[]): DatapathState => ({
  ipcache: [],
  endpoints,
  rules: [{ id: 1, text: "r1" }],
  hostIdentity: 1,
});

test("the same frozen endpoint list: no candidates, and no endpoint is looked at", () => {
  const list: DatapathEndpoint[] = [];
  let reads = 0;
  for (let i = 0; i < 100; i++) {
    const e = ep(i + 1);
    Object.defineProperty(list, i, {
      enumerable: true,
      get: () => {
        reads++;
        return e;
      },
    });
  }
  const frozen = Object.freeze(list) as DatapathEndpoint[];
  const s = state(frozen);
  reads = 0;
  assert.deepEqual(redirectCandidates(s, { ...s }), new Set());
  assert.equal(reads, 0);
});

test("a list that is not frozen is compared endpoint by endpoint (a redirect added in place is found)", () => {
  const list = [ep(1), ep(2)];
  const prev = state([...list]);
  const next = state(list);
  assert.deepEqual(redirectCandidates(prev, next), new Set());
  list[1] = { ...ep(2), egress: ep(2).ingress };
  assert.deepEqual(redirectCandidates(state([ep(1), ep(2)]), next), new Set(["2:out"]));
});
