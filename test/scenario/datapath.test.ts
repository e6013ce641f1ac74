/**
 * `membrane policy test --datapath` end to end (needs root): scenario files
 * built on scratch nodes (agent with its L7 proxy), queries sent as real
 * connections and L7 requests, verdicts compared.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { rootWith } from "../support/skip.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

function skipReason(): string | undefined {
  return rootWith("network namespaces, nftables", ["ip", "nft", "ping"]);
}
const skip = skipReason();

/** Namespaces of one run only: other runs on the machine (and in this file) may come and go meanwhile. */
function netnsCount(stem: string): number {
  const out = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
  return out.split("\n").filter((l) => l.startsWith(stem)).length;
}

function run(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const stem = "mbq" + randomBytes(3).toString("hex").slice(0, 5);
  const r = spawnSync(
    process.execPath,
    [join(ROOT, "bin/membrane.js"), "policy", "test", "--datapath", "--netns-prefix", stem, ...args],
    {
      cwd: ROOT,
      encoding: "utf8",
      // A safety net, not a time bound: the examples run takes ~3 min on a busy 2-core machine.
      timeout: 900_000,
    },
  );
  assert.equal(netnsCount(stem), 0, "the run left scratch namespaces behind");
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Query lines as [outcome, flow, expected, actual] (columns are separated by two or more blanks). */
function rows(out: string): string[][] {
  return out
    .split("\n")
    .filter((l) => /^(PASS|FAIL|SKIP) /.test(l))
    .map((l) => l.split(/ {2,}/).slice(0, 4));
}

const lastLine = (s: string): string => s.trimEnd().split("\n").pop() ?? "";

const DENY = `name: dp-deny
endpoints:
  - {name: api, namespace: default, labels: {app: api}, ip: 10.7.0.10}
  - {name: good, namespace: default, labels: {app: good}, ip: 10.7.0.20}
  - {name: bad, namespace: default, labels: {app: bad}, ip: 10.7.0.30}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: api, namespace: default}
  spec:
    endpointSelector: {matchLabels: {app: api}}
    ingress:
      - fromEntities: [cluster]
    ingressDeny:
      - fromEndpoints: [{matchLabels: {app: bad}}]
        toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
queries:
  - {from: good, to: api, proto: TCP, port: 8080, expect: allow}
  - {from: bad, to: api, proto: TCP, port: 8080, expect: deny, how: drop}
  - {from: bad, to: api, proto: UDP, port: 5353, expect: allow}
  - {from: bad, to: api, proto: ICMP, icmpType: 8, expect: allow}
  - {from: bad, to: api, proto: TCP, port: 8080, expect: allow, note: deliberately wrong}
  - {from: bad, to: api, proto: SCTP, port: 8080, expect: allow}
`;

const WORLD = `name: dp-world
endpoints:
  - {name: app, namespace: default, labels: {app: app}, ip: 10.8.1.10}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: app, namespace: default}
  spec:
    endpointSelector: {matchLabels: {app: app}}
    egress:
      - toCIDR: [192.0.2.0/24]
        toPorts: [{ports: [{port: "443", protocol: TCP}, {port: "53", protocol: UDP}]}]
    ingress:
      - fromCIDRSet: [{cidr: 198.51.100.0/24, except: [198.51.100.128/25]}]
queries:
  - {from: app, to: "world:192.0.2.10", proto: TCP, port: 443, expect: allow}
  - {from: app, to: "world:192.0.2.10", proto: UDP, port: 53, expect: allow}
  - {from: app, to: "world:192.0.2.10", proto: TCP, port: 80, expect: deny, how: drop}
  - {from: app, to: "world:203.0.113.5", proto: TCP, port: 443, expect: deny, how: drop}
  - {from: "world:198.51.100.7", to: app, proto: TCP, port: 22, expect: allow}
  - {from: "world:198.51.100.200", to: app, proto: TCP, port: 22, expect: deny, how: drop}
  - {from: app, to: host, proto: TCP, port: 10250, expect: deny, how: drop}
  - {from: host, to: app, proto: TCP, port: 9100, expect: allow}
`;

describe("policy test --datapath (root: scratch nodes, real packets)", { skip: skip ?? false }, () => {
  test("examples/starwars: L3/L4 queries run in the kernel, L7 requests through the node's proxy", () => {
    const r = run("examples/starwars");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(lastLine(r.stdout), "10 passed, 0 failed, 0 skipped");
    assert.deepEqual(rows(r.stdout), [
      ["PASS", "tiefighter -> deathstar TCP/80", "expected=allow", "actual=allow"],
      ["PASS", "xwing -> deathstar TCP/80", "expected=deny/drop", "actual=deny/drop"],
      ["PASS", "tiefighter -> deathstar TCP/443", "expected=deny/drop", "actual=deny/drop"],
      ["PASS", "xwing -> tiefighter TCP/80", "expected=allow", "actual=allow"],
      ["PASS", "deathstar -> xwing TCP/80", "expected=allow", "actual=allow"],
      ["PASS", "tiefighter -> deathstar TCP/80 POST /v1/request-landing", "expected=allow", "actual=allow"],
      [
        "PASS",
        "tiefighter -> deathstar TCP/80 PUT /v1/exhaust-port",
        "expected=deny/http-403",
        "actual=deny/http-403",
      ],
      [
        "PASS",
        "tiefighter -> deathstar TCP/80 POST /v1/request-landing/extra",
        "expected=deny/http-403",
        "actual=deny/http-403",
      ],
      [
        "PASS",
        "xwing -> deathstar TCP/80 POST /v1/request-landing",
        "expected=deny/drop",
        "actual=deny/drop",
      ],
      ["PASS", "xwing -> deathstar TCP/80 PUT /v1/exhaust-port", "expected=deny/drop", "actual=deny/drop"],
    ]);
    assert.match(
      r.stdout,
      /xwing -> deathstar TCP\/80 .*by: kernel: dropped \(mbr:d:g\d+:in:def\); engine: deny\/drop/,
    );
    assert.match(
      r.stdout,
      /PUT \/v1\/exhaust-port .*by: kernel: redirected to the proxy \(mbr:p:g\d+:in:r\d+\); HTTP 403; engine: deny\/http-403/,
    );
  });

  test("examples/l7 and examples/fqdn: Kafka, TLS SNI, DNS rules and toFQDNs run for real", () => {
    const r = run("examples/l7", "examples/fqdn");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(lastLine(r.stdout), "55 passed, 0 failed, 0 skipped");
    for (const re of [
      /PASS +producer -> broker TCP\/9092 kafka produce topic=empire-announce .*Kafka TOPIC_AUTHORIZATION_FAILED/,
      /PASS +app -> world:203\.0\.113\.5 TCP\/443 sni evil\.example\.org .*TLS connection reset/,
      /PASS +app -> kube-dns UDP\/53 dns evil\.com .*DNS REFUSED/,
      /PASS +app -> fqdn:docs\.cilium\.io TCP\/443 .*dns: docs\.cilium\.io -> 104\.198\.14\.1 asked by default\/app through the DNS proxy \(resolver kube-system\/kube-dns\)/,
      // fc: an answer the DNS proxy would not see is not given to the agent: the kernel drops.
      /PASS +app -> fqdn:api\.github\.com TCP\/443 +expected=deny\/drop .*kernel: dropped .*dns: api\.github\.com -> 140\.82\.112\.5 not learned: the DNS proxy does not see default\/app's lookup/,
      // fc: dns: [] forgets what was learned.
      /PASS +app -> world:140\.82\.112\.5 TCP\/443 +expected=deny\/drop .*kernel: dropped .*dns: api\.github\.com -> 140\.82\.112\.5 forgotten/,
    ]) {
      assert.match(r.stdout, re);
    }
  });

  test("a deny rule drops in the kernel; a wrong expectation fails with exit code 1", () => {
    const dir = mkdtempSync(join(tmpdir(), "membrane-dp-"));
    try {
      writeFileSync(join(dir, "deny.yaml"), DENY);
      const r = run(join(dir, "deny.yaml"));
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.equal(lastLine(r.stdout), "4 passed, 1 failed, 1 skipped");
      assert.deepEqual(rows(r.stdout), [
        ["PASS", "good -> api TCP/8080", "expected=allow", "actual=allow"],
        ["PASS", "bad -> api TCP/8080", "expected=deny/drop", "actual=deny/drop"],
        ["PASS", "bad -> api UDP/5353", "expected=allow", "actual=allow"],
        ["PASS", "bad -> api ICMP/8", "expected=allow", "actual=allow"],
        ["FAIL", "bad -> api TCP/8080", "expected=allow", "actual=deny/drop"],
        ["SKIP", "bad -> api SCTP/8080", "expected=allow", "actual=-"],
      ]);
      assert.match(
        r.stdout,
        /bad -> api TCP\/8080 +expected=deny\/drop .*kernel: dropped \(mbr:d:g\d+:in:r\d+\)/,
      );
      assert.match(r.stdout, /note: deliberately wrong\n +at: .*deny\.yaml:\d+ \(queries\[4\]\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("world addresses: CIDR egress and ingress with except, host both ways; -o json", () => {
    const dir = mkdtempSync(join(tmpdir(), "membrane-dp-"));
    try {
      writeFileSync(join(dir, "world.yaml"), WORLD);
      const r = run(join(dir, "world.yaml"), "-o", "json");
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const doc = JSON.parse(r.stdout) as {
        passed: number;
        failed: number;
        skipped: number;
        scenarios: { name: string; results: { outcome: string; actual?: string; observed?: string }[] }[];
      };
      assert.deepEqual([doc.passed, doc.failed, doc.skipped], [8, 0, 0]);
      assert.deepEqual(
        doc.scenarios[0]?.results.map((x) => `${x.outcome} ${x.actual ?? "-"} ${x.observed ?? "-"}`),
        [
          "pass allow ok",
          "pass allow ok",
          "pass deny timeout",
          "pass deny timeout",
          "pass allow ok",
          "pass deny timeout",
          "pass deny timeout",
          "pass allow ok",
        ],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
