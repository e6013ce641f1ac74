/**
 * A controller's revisions (agent/controller.ts): desired counts accepted
 * changes, realized follows only what the kernel accepted, and the last
 * error stays until a change accepted after it is realized.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Revisions, controllerStatus } from "../../src/agent/controller.js";

describe("controller revisions", () => {
  test("a new controller has nothing desired, nothing realized, no error", () => {
    const r = new Revisions();
    assert.deepEqual([r.desired, r.realized, r.lastError], [0, 0, undefined]);
  });

  test("realized follows the revision an enforce included, not changes accepted after it started", () => {
    const r = new Revisions();
    r.bump();
    const included = r.bump();
    r.bump(); // accepted while the enforce that included 2 ran
    r.realize(included);
    assert.deepEqual([r.desired, r.realized], [3, 2]);
  });

  test("realized never goes back and never passes desired", () => {
    const r = new Revisions();
    r.bump();
    r.bump();
    r.realize(2);
    r.realize(1);
    assert.equal(r.realized, 2);
    r.realize(9);
    assert.equal(r.realized, 2);
  });

  test("a failed enforce leaves realized and records the error with its time", () => {
    const r = new Revisions();
    r.bump();
    r.fail(new Error("nft: boom"), new Date("2026-01-02T03:04:05Z"));
    assert.equal(r.realized, 0);
    assert.deepEqual(r.lastError, { message: "nft: boom", at: "2026-01-02T03:04:05.000Z" });
  });

  test("the error stays when the same revision is realized later (a rollback), and clears with the next change", () => {
    const r = new Revisions();
    r.bump();
    r.realize(1);
    r.fail(new Error("veth failed"));
    r.realize(1);
    assert.equal(r.lastError?.message, "veth failed");
    r.realize(r.bump());
    assert.equal(r.lastError, undefined);
  });

  test("status lists each controller's name, revisions and last error", () => {
    const ok = { name: "policies", revisions: new Revisions() };
    const bad = { name: "endpoints", revisions: new Revisions() };
    ok.revisions.realize(ok.revisions.bump());
    bad.revisions.bump();
    bad.revisions.fail("no netns", new Date(0));
    assert.deepEqual(controllerStatus([ok, bad]), [
      { name: "policies", desired: 1, realized: 1 },
      {
        name: "endpoints",
        desired: 1,
        realized: 0,
        lastError: { message: "no netns", at: "1970-01-01T00:00:00.000Z" },
      },
    ]);
  });
});
