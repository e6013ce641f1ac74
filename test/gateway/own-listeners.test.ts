/**
 * OwnListeners and pickEndpoint (own-listeners.ts) on their own: which addresses are the
 * gateway's listeners (address:port pairs, other spellings) and what a pick returns.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { NO_ENDPOINT, OWN_LISTENER, OwnListeners, pickEndpoint } from "../../src/gateway/own-listeners.js";

test("a listener's address and port, in any spelling; not another port or address", () => {
  const own = new OwnListeners();
  own.set([
    { address: "10.9.0.1", port: 80 },
    { address: "fd00:9::1", port: 443 },
  ]);
  for (const a of ["10.9.0.1", "::ffff:10.9.0.1", "::FFFF:10.9.0.1"]) assert.equal(own.has(a, 80), true, a);
  for (const a of ["fd00:9::1", "fd00:9:0:0::1", "FD00:9::1", "fd00:0009::0001"])
    assert.equal(own.has(a, 443), true, a);
  assert.equal(own.has("10.9.0.1", 8080), false);
  assert.equal(own.has("10.9.0.2", 80), false);
  // Pairs, not every address with every port.
  assert.equal(own.has("fd00:9::1", 80), false);
  assert.equal(own.has("10.9.0.1", 443), false);
});

test("a table update replaces the listeners (and what was remembered of them)", () => {
  const own = new OwnListeners();
  own.set([{ address: "10.9.0.1", port: 80 }]);
  assert.equal(own.has("10.9.0.1", 80), true);
  own.set([{ address: "10.9.0.2", port: 80 }]);
  assert.equal(own.has("10.9.0.1", 80), false);
  assert.equal(own.has("10.9.0.2", 80), true);
});

test("pickEndpoint: never an own listener; OWN_LISTENER when only those are left, NO_ENDPOINT when none", () => {
  const own = new OwnListeners();
  own.set([{ address: "10.9.0.1", port: 80 }]);
  for (const r of [0, 0.49, 0.5, 0.99])
    assert.equal(
      pickEndpoint(["10.9.0.1", "10.9.0.7"], 80, own, () => r),
      "10.9.0.7",
      String(r),
    );
  assert.equal(
    pickEndpoint(["10.9.0.1", "::ffff:10.9.0.1"], 80, own, () => 0.3),
    OWN_LISTENER,
  );
  assert.equal(
    pickEndpoint(["10.9.0.1"], 8080, own, () => 0.3),
    "10.9.0.1",
  );
  assert.equal(
    pickEndpoint([], 80, own, () => 0.3),
    NO_ENDPOINT,
  );
  // A retry avoiding the only other endpoint: nothing it may use.
  assert.equal(
    pickEndpoint(["10.9.0.1", "10.9.0.7"], 80, own, () => 0.3, "10.9.0.7"),
    OWN_LISTENER,
  );
});
