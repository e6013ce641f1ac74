/** Route timeouts' pure parts: the duration format and the limit one attempt gets (never past setTimeout's range). */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { attemptLimitMs, parseDuration } from "../../src/gateway/timeouts.js";

describe("gateway route timeouts (pure)", () => {
  test("durations: the Gateway API's subset, 1 to 4 parts", () => {
    assert.equal(parseDuration("500ms"), 500);
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("0s"), 0);
    for (const bad of ["", "1.5s", "500", "123456s", "1h1m1s1ms1h", "-1s", "1d"])
      assert.equal(parseDuration(bad), undefined, bad);
  });

  test("an attempt gets the tighter limit, and a valid but huge one stays a timer that does not fire at once", () => {
    assert.equal(attemptLimitMs(undefined, undefined, 0), undefined);
    assert.equal(attemptLimitMs({ backendRequestMs: 300 }, 1000, 0), 300);
    assert.equal(attemptLimitMs({ backendRequestMs: 300 }, 1000, 900), 100);
    const huge = parseDuration("99999h") ?? 0;
    assert.ok(huge > 2 ** 31 - 1);
    assert.equal(attemptLimitMs({ requestMs: huge }, huge, 0), 2 ** 31 - 1);
    assert.equal(attemptLimitMs({ backendRequestMs: huge }, undefined, 0), 2 ** 31 - 1);
  });
});
