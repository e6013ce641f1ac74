import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseGuardLine } from "../../../src/runtime/enforce/connect-guard.js";

describe("connect guard output lines (pure)", () => {
  test("an event line: flags, ids, address and port; comm bytes escaped", () => {
    const l = parseGuardLine(
      `event ${0x30002} 41 42 1000 123456789 77 4 8081 7f000001 ${Buffer.from('a"b\\\n').toString("hex")}`,
    );
    assert.deepEqual(l, {
      kind: "event",
      event: {
        rule: 2,
        denied: true,
        killed: true,
        pid: 41,
        tid: 42,
        uid: 1000,
        ktimeNs: 123456789n,
        cgroupId: "77",
        family: 4,
        port: 8081,
        address: "127.0.0.1",
        comm: 'a"b\\x5c\\x0a',
      },
    });
    const v6 = parseGuardLine(`event 0 1 1 0 1 1 6 443 ${"00".repeat(15)}01 -`);
    assert.equal(v6.kind === "event" && v6.event.address, "0:0:0:0:0:0:0:1");
  });

  for (const bad of [
    "event 0 1 1 0 1 1 4 80 00000000000000000000000000000001 -", // v4 with a v6 address
    "event 0 1 1 0 1 1 6 80 7f000001 -",
    "event 0 1 1 0 1 1 4 80 7f000001 " + "41".repeat(17),
    "event 0 1 1 0 1 1 4 80 7f000001 zz",
    "event 0 1 1 0 1 1 4 80 7f000001 - extra",
    "ready now",
  ])
    test(`refused: ${bad.slice(0, 60)}`, () => assert.equal(parseGuardLine(bad).kind, "other"));

  test("ready, lost and errors", () => {
    assert.deepEqual(parseGuardLine("ready"), { kind: "ready" });
    assert.deepEqual(parseGuardLine("lost 12"), { kind: "lost", total: 12 });
    assert.deepEqual(parseGuardLine("error load4 22 x"), { kind: "error", text: "load4 22 x" });
  });
});
