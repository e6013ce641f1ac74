/**
 * The stamp's hash (no root): the first 64 bits of SHA-256, whichever way it is
 * computed, so that a table stamped by an earlier agent is still adopted.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { h64 } from "../../src/datapath/stamp.js";

test("h64 is the first 64 bits of SHA-256 of the text (tables stamped before are still adopted)", () => {
  for (const text of ["", "host 10.0.0.1=256", "ep 7\nx", "é ✓ ".repeat(100)]) {
    assert.equal(h64(text), createHash("sha256").update(text).digest().readBigUInt64BE(0), text);
  }
});
