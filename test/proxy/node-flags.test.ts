/**
 * The proxy process's V8 options (src/proxy/runtime/node-flags.ts) take effect on the Node
 * that runs the tests: a Node started with them has a young generation of at least 16 MB a
 * semi-space from its first allocation. Without the floor V8 starts at 1 MB and shrinks back
 * to it after every quiet spell, and the HTTP proxy then scavenged ~7x as often at moderate
 * load. Checked on a real Node process: the flag is V8's, not ours, and a Node whose V8
 * dropped or renamed it must fail here, not in the proxy's start or, silently, in its tail.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { PROXY_NODE_FLAGS } from "../../src/proxy/runtime/node-flags.js";

const FLOOR_MB = 16;

// The young generation's semi-space as V8 reports it (new_space's capacity), in MB.
const PROBE = `const v8 = require("node:v8");
const n = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
process.stdout.write(String(n ? n.space_size / 1048576 : -1));`;

test(`a Node started with the proxy's flags has a young generation of at least ${FLOOR_MB} MB a semi-space`, () => {
  const r = spawnSync(process.execPath, [...PROXY_NODE_FLAGS, "-e", PROBE], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "", "V8 or Node warned about the flags");
  const mb = Number(r.stdout);
  assert.ok(mb >= FLOOR_MB, `new space ${r.stdout} MB with ${PROXY_NODE_FLAGS.join(" ")}`);
});
