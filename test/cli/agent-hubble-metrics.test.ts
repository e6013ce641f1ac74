/**
 * `membrane agent --hubble-metrics`: listed in --help; a bad handler option stops the agent
 * before it starts anything (no state directory, no socket), with an error naming the option and
 * a hint listing what is accepted. The agent is pointed at a node namespace that does not exist
 * (prefix m2m-), so a parser that let the option through could not touch this machine.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { cli } from "./run-cli.js";

describe("membrane agent --hubble-metrics", () => {
  test("--help names the flag and Hubble's handlers", () => {
    const r = cli("agent", "--help");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /--hubble-metrics <list>/);
    assert.match(r.stdout.replace(/\s+/g, " "), /flows-to-world dns http httpV2 kafka/);
  });

  test("an unknown option is refused naming it, before anything starts", () => {
    const dir = mkdtempSync(join(tmpdir(), "m2m-cli-"));
    try {
      const state = join(dir, "state");
      const socket = join(dir, "agent.sock");
      const r = cli(
        "agent",
        "--state-dir",
        state,
        "--socket",
        socket,
        "--node-netns",
        "m2m-absent",
        "--netns-prefix",
        "m2m-",
        "--table",
        "m2m_metrics",
        "--hubble-metrics",
        "tcp flow:sourceContext=namespace dns:query;qeury",
      );
      assert.notEqual(r.code, 0);
      assert.match(
        r.stderr,
        /Cannot enable Hubble metrics: --hubble-metrics item 3 "dns:query;qeury": unknown option "qeury" of dns/,
      );
      assert.match(r.stderr, /hint: Options of dns: query, ignoreAAAA, sourceContext/);
      assert.equal(existsSync(state), false, "no state directory");
      assert.equal(existsSync(socket), false, "no socket");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
