/**
 * The TracingPolicy controller covers an endpoint whose namespace appears after
 * the endpoint is listed (root, real fanotify): the agent lists an endpoint
 * while it is being created, and the periodic check may run in between. Under
 * CI's load, `ip netns add` had created the file but not yet mounted the
 * namespace on it, or not created it at all; the check then cached that set
 * and the endpoint's own create found "no change": a `late` endpoint read
 * /etc/shadow through a deny policy (agent-e2e.test.ts).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import pino from "pino";
import { TracingPoliciesController } from "../../../src/agent/controllers/tracing-policies.js";
import type { EndpointView } from "../../../src/agent/controllers/endpoint-record.js";
import { DENY_FILE, faPrefix, fanotifySkipReason, sh } from "./helpers.js";

const skip = fanotifySkipReason();

const view = (name: string, netns: string): EndpointView => ({
  name,
  namespace: "default",
  id: 1,
  identity: 1000,
  labels: { app: "victim" },
  ipv4: "10.0.0.1",
  netns,
  hostIfname: "none",
  ingress: { enforced: false, entries: 0 },
  egress: { enforced: false, entries: 0 },
  policyRevision: 0,
});

describe("TracingPolicy endpoints whose namespace comes later (root)", { skip }, () => {
  test("a namespace missing, then a plain file in its place, then mounted: covered once it is a namespace", async () => {
    const ns = `${faPrefix()}-late`;
    const path = `/run/netns/${ns}`;
    const c = new TracingPoliciesController({ logger: pino({ level: "silent" }), endpoints: () => [view("late", ns)] }); // prettier-ignore
    try {
      await c.apply(DENY_FILE("security_file_open", "Equal", ["/etc/shadow"], "deny-late"), "t.yaml");
      await c.endpointsChanged(); // listed, no namespace yet
      assert.equal(c.list()[0]?.endpoints, 0);
      writeFileSync(path, ""); // what `ip netns add` leaves for an instant: a file, nothing mounted
      await c.endpointsChanged();
      assert.equal(c.list()[0]?.endpoints, 0, "a plain file is no namespace");
      rmSync(path);
      assert.equal(spawnSync("ip", ["netns", "add", ns]).status, 0);
      await c.endpointsChanged(); // the same listing, now a namespace: a change
      assert.equal(c.list()[0]?.endpoints, 1, JSON.stringify(c.list()));
      const cat = await sh(ns, 'cat "$1"', "/etc/shadow");
      assert.equal(cat.code, 1, `read through the policy: ${cat.err}`);
    } finally {
      await c.stop();
      spawnSync("ip", ["netns", "del", ns]);
      rmSync(path, { force: true });
    }
  });
});
