/**
 * Policy records in the store (agent/policy-store.ts): the normalised form
 * survives encoding exactly, V1 records (a copy of the file per policy) are
 * read and rewritten, and a record that cannot be read is skipped, not fatal.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { pino } from "pino";
import { parseAllDocuments } from "yaml";
import { decodePolicy, encodePolicy, readPolicies } from "../../src/agent/policy-store.js";
import { KEYS } from "../../src/agent/records.js";
import { parsePolicies } from "../../src/policy/api/index.js";

function exampleFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? exampleFiles(p) : n.endsWith(".yaml") ? [p] : [];
  });
}

const silent = pino({ level: "silent" });

const TWO = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress: [{fromCIDRSet: [{cidr: "10.0.0.0/8", except: ["10.1.0.0/16"]}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b, namespace: prod}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{ports: [{port: 53, protocol: UDP}]}]
`;

describe("policy records in the store", () => {
  test("every policy of examples/ decodes to exactly what the parser produced", () => {
    let n = 0;
    for (const file of exampleFiles("examples")) {
      // Scenario files are one document with `policies:`; resource files (Services, Gateways) have several.
      const docs = parseAllDocuments(readFileSync(file, "utf8"));
      const doc = (Array.isArray(docs) && docs.length === 1 ? docs[0]?.toJS() : undefined) as
        { policies?: unknown } | undefined;
      if (typeof doc?.policies !== "string") continue;
      for (const res of parsePolicies(doc.policies, file, { meshAuth: true })) {
        const decoded = decodePolicy(encodePolicy(res).value);
        assert.ok(decoded, `${file}: ${res.ref.name} decodes`);
        assert.deepStrictEqual(decoded.res, res, `${file}: ${res.ref.name}`);
        assert.equal(decoded.body, encodePolicy(res).body);
        n++;
      }
    }
    assert.ok(n > 30, `${n} policies checked`);
  });

  test("one record per policy holds that policy only, not the file it came from", () => {
    const [a, b] = parsePolicies(TWO, "two.yaml");
    assert.ok(a && b);
    assert.ok(!encodePolicy(a).value.includes('"prod"'), "policy a's record does not hold policy b");
    assert.equal(JSON.parse(encodePolicy(a).value).v, 2);
    assert.deepEqual(JSON.parse(encodePolicy(a).value).source, { file: "two.yaml", line: 1 });
  });

  test("the same policy from another file or line has the same body (unchanged), another rule does not", () => {
    const [a] = parsePolicies(TWO, "two.yaml");
    const [a2] = parsePolicies("---\n" + TWO.split("---")[0], "other.yaml");
    const [a3] = parsePolicies(TWO.replace("10.1.0.0/16", "10.2.0.0/16"), "two.yaml");
    assert.ok(a && a2 && a3);
    assert.equal(encodePolicy(a2).body, encodePolicy(a).body);
    assert.notEqual(encodePolicy(a3).body, encodePolicy(a).body);
  });

  test("V1 records are parsed once per file and returned for rewriting as V2; unreadable records are skipped", () => {
    const v1 = JSON.stringify({ text: TWO, file: "two.yaml" });
    const [a] = parsePolicies(TWO, "two.yaml");
    assert.ok(a);
    const kvs = [
      { key: `${KEYS.policies}CiliumNetworkPolicy/default/a`, value: v1 },
      { key: `${KEYS.policies}NetworkPolicy/prod/b`, value: v1 },
      { key: `${KEYS.policies}NetworkPolicy/prod/gone`, value: v1 },
      { key: `${KEYS.policies}CiliumNetworkPolicy/default/x`, value: encodePolicy(a).value },
      { key: `${KEYS.policies}CiliumNetworkPolicy/default/bad`, value: "{not json" },
    ];
    const errors: unknown[] = [];
    const logger = pino({ level: "error" }, { write: (l: string) => errors.push(JSON.parse(l)) });
    const r = readPolicies(kvs, { meshAuth: false, logger });
    assert.deepEqual(
      r.policies.map((p) => p.key),
      ["CiliumNetworkPolicy/default/a", "NetworkPolicy/prod/b"],
    );
    assert.deepStrictEqual(r.policies[0]?.res, a);
    assert.deepEqual(
      r.migrate.map((op) => [op.key, op.type === "put" ? JSON.parse(op.value).v : undefined]),
      [
        [`${KEYS.policies}CiliumNetworkPolicy/default/a`, 2],
        [`${KEYS.policies}NetworkPolicy/prod/b`, 2],
      ],
    );
    assert.equal(errors.length, 3, "gone, x (names another policy) and bad are logged");
    const again = readPolicies(
      r.migrate.map((op) => ({ key: op.key, value: op.type === "put" ? op.value : "" })),
      { meshAuth: false, logger: silent },
    );
    assert.deepStrictEqual(
      again.policies.map((p) => p.res),
      r.policies.map((p) => p.res),
    );
    assert.equal(again.migrate.length, 0);
  });
});
