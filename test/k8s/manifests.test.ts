/**
 * deploy/kubernetes/*.yaml, checked against the code: every document parses
 * and has a known kind/apiVersion; the CRDs are the Cilium kinds the watcher
 * watches; the ClusterRole grants list and watch on every resource of
 * src/k8s/resources.ts (the watcher's own table, not a list written here);
 * the DaemonSet's flags exist in `membrane agent --help`; the CNI
 * configuration is a conflist chaining membrane-cni on the agent's socket.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { WATCHED } from "../../src/k8s/resources.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const DIR = join(ROOT, "deploy/kubernetes");
const run = promisify(execFile);

type Doc = Record<string, unknown> & { kind: string; apiVersion: string; metadata: { name: string } };

const KINDS: Record<string, string> = {
  CustomResourceDefinition: "apiextensions.k8s.io/v1",
  ServiceAccount: "v1",
  ConfigMap: "v1",
  ClusterRole: "rbac.authorization.k8s.io/v1",
  ClusterRoleBinding: "rbac.authorization.k8s.io/v1",
  DaemonSet: "apps/v1",
};

async function docs(): Promise<Doc[]> {
  const out: Doc[] = [];
  for (const f of (await readdir(DIR)).filter((n) => n.endsWith(".yaml")).sort()) {
    for (const d of parseAllDocuments(await readFile(join(DIR, f), "utf8"))) {
      assert.deepEqual(d.errors, [], `${f} parses`);
      out.push({ ...(d.toJS() as Doc), file: f } as Doc);
    }
  }
  return out;
}

const get = (o: unknown, ...path: (string | number)[]): unknown =>
  path.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], o);

describe("deploy/kubernetes manifests", () => {
  test("every document parses and has a known kind and apiVersion", async () => {
    const all = await docs();
    assert.ok(all.length >= 7);
    for (const d of all) {
      assert.ok(Object.hasOwn(KINDS, d.kind), `${String(d["file"])}: kind ${d.kind}`);
      assert.equal(d.apiVersion, KINDS[d.kind], `${d.kind} ${d.metadata.name}`);
    }
  });

  test("the CRDs are the cilium.io kinds the watcher watches, with their scope", async () => {
    const crds = (await docs()).filter((d) => d.kind === "CustomResourceDefinition");
    const cilium = WATCHED.filter((r) => r.group === "cilium.io");
    assert.deepEqual(
      crds.map((c) => c.metadata.name).sort(),
      cilium.map((r) => `${r.resource}.cilium.io`).sort(),
    );
    for (const r of cilium) {
      const c = crds.find((d) => d.metadata.name === `${r.resource}.cilium.io`);
      assert.equal(get(c, "spec", "names", "kind"), r.kind);
      assert.equal(get(c, "spec", "names", "plural"), r.resource);
      assert.equal(get(c, "spec", "scope"), r.namespaced ? "Namespaced" : "Cluster");
      const v = (get(c, "spec", "versions") as { name: string; served: boolean; storage: boolean }[]).find(
        (x) => x.name === r.version,
      );
      assert.ok(v?.served && v.storage, `${r.kind} ${r.version} served and stored`);
    }
  });

  test("the ClusterRole grants list and watch on every resource the watcher watches (from src/k8s/resources.ts)", async () => {
    const all = await docs();
    const role = all.find((d) => d.kind === "ClusterRole");
    const rules = get(role, "rules") as { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    for (const r of WATCHED) {
      for (const verb of ["list", "watch"]) {
        assert.ok(
          rules.some(
            (x) =>
              x.apiGroups.includes(r.group) && x.resources.includes(r.resource) && x.verbs.includes(verb),
          ),
          `${verb} ${r.group || "core"}/${r.resource}`,
        );
      }
    }
    for (const x of rules)
      assert.deepEqual(
        x.verbs.filter((v) => !["get", "list", "watch"].includes(v)),
        [],
        "read only",
      );
    const binding = all.find((d) => d.kind === "ClusterRoleBinding");
    const sa = all.find((d) => d.kind === "ServiceAccount");
    assert.equal(get(binding, "roleRef", "name"), role?.metadata.name);
    assert.equal(get(binding, "subjects", 0, "name"), sa?.metadata.name);
    const ds = all.find((d) => d.kind === "DaemonSet");
    assert.equal(get(ds, "spec", "template", "spec", "serviceAccountName"), sa?.metadata.name);
  });

  test("the DaemonSet runs `membrane agent` with flags that `membrane agent --help` lists", async () => {
    const ds = (await docs()).find((d) => d.kind === "DaemonSet");
    const agent = (get(ds, "spec", "template", "spec", "containers") as Record<string, unknown>[]).find(
      (c) => c["name"] === "agent",
    );
    assert.deepEqual(agent?.["command"], ["membrane", "agent"]);
    const { stdout } = await run(process.execPath, [join(ROOT, "bin/membrane.js"), "agent", "--help"]);
    const args = agent?.["args"] as string[];
    assert.ok(args.some((a) => a.startsWith("--kubeconfig=")));
    for (const a of args) {
      const flag = a.split("=")[0] as string;
      assert.match(flag, /^--[a-z0-9-]+$/);
      assert.ok(stdout.includes(`${flag} `), `${flag} is an option of membrane agent`);
    }
    assert.equal(get(ds, "spec", "template", "spec", "hostNetwork"), true);
  });

  test("the CNI configuration chains membrane-cni after ptp on the agent's socket; the setup script is valid", async () => {
    const all = await docs();
    const cm = all.find((d) => d.kind === "ConfigMap");
    const conf = JSON.parse(String(get(cm, "data", "05-membrane.conflist"))) as {
      cniVersion: string;
      plugins: Record<string, unknown>[];
    };
    assert.equal(conf.cniVersion, "1.0.0");
    assert.deepEqual(
      conf.plugins.map((p) => p["type"]),
      ["ptp", "membrane-cni"],
    );
    const mine = conf.plugins[1] as Record<string, unknown>;
    // The keys membrane-cni accepts (examples/cni/README.md of the CNI plugin).
    for (const k of Object.keys(mine))
      assert.ok(["type", "socket", "namespace", "labels", "timeoutSeconds"].includes(k), k);
    const ds = all.find((d) => d.kind === "DaemonSet");
    const args = get(ds, "spec", "template", "spec", "containers", 0, "args") as string[];
    assert.ok(args.includes(`--socket=${String(mine["socket"])}`));
    const dir = await mkdtemp(join(tmpdir(), "membrane-setup-"));
    try {
      await writeFile(join(dir, "setup.mjs"), String(get(cm, "data", "setup.mjs")));
      await run(process.execPath, ["--check", join(dir, "setup.mjs")]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
