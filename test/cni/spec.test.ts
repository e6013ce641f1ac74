/**
 * membrane-cni against the CNI spec's own artefacts (test/cni/upstream/: SPEC.md,
 * pkg/types/types.go, pkg/types/100/types.go of containernetworking/cni, Apache-2.0):
 * the error codes are the table of SPEC.md and the constants of types.go; every
 * object we print has only keys the Go types' JSON tags define; each bad input
 * gets the code the spec gives it. The agent is replaced by a function here
 * (plugin.ts AgentCall); the compiled binary is run for what a process adds.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { run } from "../../src/cni/plugin.js";
import { CNI_ERRORS, SUPPORTED_VERSIONS } from "../../src/cni/spec.js";
import { agent, CASES, conf, ENV, PREV } from "./spec-cases.js";

const upstream = (f: string): string =>
  readFileSync(fileURLToPath(new URL(`../../../test/cni/upstream/${f}`, import.meta.url)), "utf8");
const BIN = fileURLToPath(new URL("../../../bin/membrane-cni.js", import.meta.url));

/** The JSON tags of a Go struct in `src`. */
function jsonTags(src: string, struct: string): Set<string> {
  const body = new RegExp(`type ${struct} struct \\{([^}]*)\\}`).exec(src)?.[1];
  assert.ok(body, `struct ${struct} in the vendored Go types`);
  return new Set([...body.matchAll(/json:"([^,"]+)/g)].map((m) => m[1] ?? ""));
}

describe("membrane-cni against the vendored CNI spec", () => {
  test("the error codes are SPEC.md's table and types.go's constants", () => {
    const table = new Map(
      [...upstream("SPEC.md").matchAll(/^ `(\d+)`\|(.+)$/gm)].map((m) => [Number(m[1]), m[2] ?? ""]),
    );
    const go = upstream("types.go");
    const goConst = (name: string): number => {
      const lines = go.split("\n");
      const i = lines.findIndex((l) => new RegExp(`^\\s*${name}\\s`).test(l));
      const m = /(?:= iota|\/\/)\s*(\d+)|= (\d+)/.exec(lines[i] ?? "");
      return Number(m?.[1] ?? m?.[2]);
    };
    const expect: Record<keyof typeof CNI_ERRORS, [string, RegExp]> = {
      incompatibleVersion: ["ErrIncompatibleCNIVersion", /Incompatible CNI version/],
      unsupportedField: ["ErrUnsupportedField", /Unsupported field/],
      unknownContainer: ["ErrUnknownContainer", /Container unknown/],
      invalidEnvironment: ["ErrInvalidEnvironmentVariables", /Invalid necessary environment/],
      ioFailure: ["ErrIOFailure", /I\/O failure/],
      decodingFailure: ["ErrDecodingFailure", /Failed to decode/],
      invalidConfig: ["ErrInvalidNetworkConfig", /Invalid network config/],
      tryAgainLater: ["ErrTryAgainLater", /Try again later/],
      notAvailable: ["ErrPluginNotAvailable", /not available \(/],
      limitedConnectivity: ["ErrLimitedConnectivity", /limited connectivity/],
    };
    for (const [k, [goName, text]] of Object.entries(expect)) {
      const code = CNI_ERRORS[k as keyof typeof CNI_ERRORS];
      assert.match(table.get(code) ?? "", text, `SPEC.md code ${code} (${k})`);
      assert.equal(goConst(goName), code, `types.go ${goName}`);
    }
    assert.match(upstream("SPEC.md"), /This is CNI \*\*spec\*\* version \*\*1\.1\.0\*\*/);
    assert.deepEqual([...SUPPORTED_VERSIONS], ["1.0.0", "1.1.0"]);
  });

  test("ADD passes prevResult through with the configuration's cniVersion, and prints only keys of types100.Result", async () => {
    const a = agent({ name: "net1" });
    const out = await run(
      { ...ENV, CNI_COMMAND: "ADD", CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=My_Web;MEMBRANE_LABELS=app:web" },
      conf({ prevResult: PREV }),
      a.call,
    );
    assert.equal(out.status, 0, out.stdout);
    const r = JSON.parse(out.stdout) as Record<string, unknown>;
    assert.deepEqual(r, { ...PREV, cniVersion: "1.1.0" });
    const go = upstream("types100.go");
    const tags = jsonTags(go, "Result");
    for (const k of Object.keys(r)) assert.ok(tags.has(k), `Result has ${k}`);
    const ifTags = jsonTags(go, "Interface");
    for (const i of r["interfaces"] as object[]) for (const k of Object.keys(i)) assert.ok(ifTags.has(k), k);
    const ipTags = jsonTags(go, "ipConfig");
    for (const i of r["ips"] as object[]) for (const k of Object.keys(i)) assert.ok(ipTags.has(k), k);
    // What the agent was asked: the veth among the host interfaces, the container's address, the identity.
    assert.deepEqual(a.calls, [
      [
        "POST",
        "/v1/cni/attachments",
        {
          containerId: "c1abc",
          ifname: "eth0",
          network: "net1",
          netns: "/run/netns/c1",
          namespace: "default",
          name: "my-web",
          labels: { app: "web" },
          hostInterfaces: ["veth1234"],
          ips: ["10.89.0.5"],
        },
      ],
    ]);
  });

  test("standalone ADD (no prevResult) asks the agent to wire the container and prints its result, with only keys of types100.Result", async () => {
    const cniResult = {
      interfaces: [{ name: "mbc7" }, { name: "eth0", mac: "aa:bb:cc:dd:ee:01", sandbox: "/run/netns/c1" }],
      ips: [{ address: "10.210.0.7/32", gateway: "10.210.0.1", interface: 1 }],
      routes: [{ dst: "0.0.0.0/0", gw: "10.210.0.1" }],
    };
    const a = agent({ name: "web", cniResult });
    const out = await run(
      { ...ENV, CNI_COMMAND: "ADD", CNI_ARGS: "K8S_POD_NAME=web;MEMBRANE_LABELS=app:web" },
      conf(),
      a.call,
    );
    assert.equal(out.status, 0, out.stdout);
    const r = JSON.parse(out.stdout) as Record<string, unknown>;
    assert.deepEqual(r, { cniVersion: "1.1.0", ...cniResult });
    const go = upstream("types100.go");
    const tags = jsonTags(go, "Result");
    for (const k of Object.keys(r)) assert.ok(tags.has(k), `Result has ${k}`);
    const ifTags = jsonTags(go, "Interface");
    for (const i of r["interfaces"] as object[]) for (const k of Object.keys(i)) assert.ok(ifTags.has(k), k);
    const ipTags = jsonTags(go, "ipConfig");
    for (const i of r["ips"] as object[]) for (const k of Object.keys(i)) assert.ok(ipTags.has(k), k);
    const rtTags = jsonTags(upstream("types.go"), "route");
    for (const i of r["routes"] as object[]) for (const k of Object.keys(i)) assert.ok(rtTags.has(k), k);
    assert.deepEqual(a.calls, [
      [
        "POST",
        "/v1/cni/attachments",
        {
          containerId: "c1abc",
          ifname: "eth0",
          network: "net1",
          netns: "/run/netns/c1",
          namespace: "default",
          name: "web",
          labels: { app: "web" },
          hostInterfaces: [],
          ips: [],
          standalone: true,
        },
      ],
    ]);
  });

  test("VERSION answers the versions we implement, with only the keys of SPEC.md's VERSION result", async () => {
    for (const v of ["1.0.0", "1.1.0", "0.4.0"]) {
      const out = await run({ CNI_COMMAND: "VERSION" }, JSON.stringify({ cniVersion: v }));
      assert.deepEqual(JSON.parse(out.stdout), { cniVersion: v, supportedVersions: ["1.0.0", "1.1.0"] });
      assert.equal(out.status, 0);
    }
  });

  for (const c of CASES) {
    test(c.name, async () => {
      const a = agent(c.agent ?? {});
      const out = await run(c.env, c.stdin, a.call);
      assert.equal(out.status, 1);
      const e = JSON.parse(out.stdout) as Record<string, unknown>;
      const tags = jsonTags(upstream("types.go"), "Error");
      for (const k of Object.keys(e)) assert.ok(k === "cniVersion" || tags.has(k), `error key ${k}`);
      assert.equal(e["code"], c.code, out.stdout);
      assert.equal(typeof e["msg"], "string");
      assert.match(String(e["details"]), c.details);
      if (c.code !== 11 && c.code !== 100 && c.code !== 50)
        assert.equal(a.calls.length, 0, "the agent was not asked");
    });
  }

  test("DEL, CHECK and GC print nothing on success; GC sends the valid attachments of its network", async () => {
    for (const cmd of ["DEL", "CHECK"]) {
      const a = agent({});
      const out = await run({ ...ENV, CNI_COMMAND: cmd }, conf({ prevResult: PREV }), a.call);
      assert.deepEqual([out.status, out.stdout], [0, ""], cmd);
      assert.deepEqual(a.calls[0]?.slice(0, 2), [
        cmd === "DEL" ? "DELETE" : "GET",
        "/v1/cni/attachments/c1abc/eth0",
      ]);
    }
    const a = agent({ deleted: [] });
    const valid = [{ containerID: "c1abc", ifname: "eth0" }];
    const out = await run({ CNI_COMMAND: "GC" }, conf({ "cni.dev/valid-attachments": valid }), a.call);
    assert.deepEqual([out.status, out.stdout], [0, ""]);
    assert.deepEqual(a.calls, [["POST", "/v1/cni/gc", { network: "net1", valid }]]);
  });

  test("the installed binary: by hand it exits 1 with the error object; VERSION works without an agent", () => {
    const env = { PATH: process.env["PATH"] ?? "" };
    const byHand = spawnSync(process.execPath, [BIN], { env, encoding: "utf8" });
    assert.equal(byHand.status, 1);
    assert.equal((JSON.parse(byHand.stdout) as { code: number }).code, 4);
    const v = spawnSync(process.execPath, [BIN], {
      env: { ...env, CNI_COMMAND: "VERSION" },
      input: '{"cniVersion":"1.0.0"}',
      encoding: "utf8",
    });
    assert.equal(v.status, 0, v.stderr);
    assert.deepEqual(JSON.parse(v.stdout), { cniVersion: "1.0.0", supportedVersions: ["1.0.0", "1.1.0"] });
  });
});
