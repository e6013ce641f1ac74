/**
 * The CLI reads at most LIMITS.bytes of a policy or scenario file: an
 * endless input (`/dev/zero`, a pipe) or a huge file is refused with
 * INPUT_LIMIT_EXCEEDED before it is read whole, and hostile YAML gets the
 * limit's clear error instead of minutes of parsing.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { LIMITS } from "../../src/policy/api/limits.js";
import { cli, ROOT, tempFiles } from "./run-cli.js";

const SAFETY = { timeout: 120_000 };
const SIZE = `the input is larger than the limit of ${LIMITS.bytes} bytes (2 MiB) (limit bytes=${LIMITS.bytes})`;

describe("CLI: bounded input files", () => {
  test("`apply -f /dev/zero` is refused after 2 MiB, not read until memory runs out", SAFETY, () => {
    const r = cli("apply", "-f", "/dev/zero", "--socket", "/nonexistent/agent.sock");
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^Error: Cannot read /dev/zero: ${SIZE.replace(/[()]/g, "\\$&")}`));
  });

  test("`apply -f -` with an endless pipe on stdin is refused the same way", SAFETY, () => {
    const r = spawnSync(
      "sh",
      ["-c", `yes | "${process.execPath}" bin/membrane.js apply -f - --socket /nonexistent/agent.sock`],
      { cwd: ROOT, encoding: "utf8", timeout: 60_000 },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.ok(r.stderr.startsWith(`Error: Cannot read <stdin>: ${SIZE}`), r.stderr);
  });

  test("`policy test` on a 3 MiB scenario file and `apply` on an alias bomb name the limit", SAFETY, () => {
    const n = 30;
    const times = (s: string): string => Array<string>(n).fill(s).join(", ");
    const bomb =
      "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\n" +
      `x0: &q {port: "80", protocol: TCP}\nx1: &t {ports: [${times("*q")}]}\n` +
      `x2: &r {toPorts: [${times("*t")}]}\nx3: &s {endpointSelector: {}, ingress: [${times("*r")}]}\n` +
      `specs: [${times("*s")}]\n`;
    const dir = tempFiles({ "bomb.yaml": bomb });
    try {
      writeFileSync(join(dir, "big.yaml"), "name: big\n#" + "x".repeat(3 << 20) + "\n");
      const big = cli("policy", "test", join(dir, "big.yaml"));
      assert.equal(big.code, 2, big.stderr);
      assert.ok(big.stderr.startsWith(`Error: Cannot read ${join(dir, "big.yaml")}: ${SIZE}`), big.stderr);

      const r = cli("apply", "-f", join(dir, "bomb.yaml"), "--socket", "/nonexistent/agent.sock");
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        /^Error: Cannot read .*bomb\.yaml: the input expands aliases \(\*name\) to more than the limit of 10000 nodes \(limit aliasNodes=10000\), at .*bomb\.yaml:\d+\n/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
