/**
 * routeAnswers: a helper process's answer lines reach the waiter of their id;
 * hostile or malformed lines reach nobody, and fields of the wrong type are dropped.
 */
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { routeAnswers, type ChildAnswer } from "../../src/datapath/child-answers.js";

test("answer lines are routed by id; malformed ones are ignored and fields are checked", async () => {
  const out = new PassThrough();
  const got: [number, ChildAnswer][] = [];
  const waiters = new Map<number, (a: ChildAnswer) => void>();
  for (const id of [1, 2, 3]) waiters.set(id, (a) => got.push([id, a]));
  routeAnswers(out, waiters);
  out.end(
    [
      "not json",
      "null",
      "[1]",
      '{"id": "1", "ok": true}', // id of the wrong type
      '{"id": 9, "ok": true}', // nobody waits for 9
      '{"id": 2, "ok": "yes", "error": 5, "errno": 1.5}',
      `{"id": 1, "ok": true, "error": "${"x".repeat(5000)}"}`,
      '{"id": 1, "ok": false}', // already answered
      '{"id": 3, "ok": false, "error": "refused", "errno": 16}',
    ].join("\n") + "\n",
  );
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    got.map(([id, a]) => [id, a.ok, a.error?.length ?? a.error, a.errno]),
    [
      [2, false, undefined, undefined],
      [1, true, 2000, undefined],
      [3, false, 7, 16],
    ],
  );
  assert.equal(waiters.size, 0);
});
