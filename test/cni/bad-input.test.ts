/**
 * membrane-cni with a real agent when things go wrong (needs root), issue 17
 * item 5: a container whose namespace or veth vanished, a DEL for something
 * never added, CHECK of a broken attachment, GC, the agent down. Each time:
 * a clear error with the spec's code, and nothing half-made or leaked (the
 * agent's endpoints and the kernel's table as before, no veth left in the node).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { rootSkipReason } from "../agent/e2e/harness.js";
import { CniLab } from "./harness.js";

const skip =
  rootSkipReason() ?? (existsSync("/usr/lib/cni/ptp") ? undefined : "needs containernetworking-plugins");

const containerIp = (r: Record<string, unknown>): string =>
  String((r["ips"] as { address: string }[])[0]?.address).split("/")[0] ?? "";
const code = (stdout: string): unknown => (JSON.parse(stdout) as { code: number }).code;

async function nodeVeths(c: CniLab): Promise<string[]> {
  const out = await c.lab.ip(["-n", c.lab.node, "-j", "link", "show", "type", "veth"]);
  return (JSON.parse(out) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.startsWith("veth"));
}

describe("membrane-cni: bad input and failures with a real agent (root)", { skip: skip ?? false }, () => {
  test("a container whose veth vanished before membrane-cni ran is refused (100), and the agent and the kernel are as before", async () => {
    const c = await CniLab.start("ptp", "10.89.5.0/24");
    try {
      const att = { ...(await c.sandbox("gone")), args: "IgnoreUnknown=1;K8S_POD_NAME=gone" };
      const before = c.lab.agent.listEndpoints().length;
      const ptp = await c.rt.one("ADD", "ptp", att);
      assert.equal(ptp.status, 0, ptp.stdout);
      // The container dies between the two plugins: its namespace (and so the veth pair) goes.
      await c.lab.ip(["netns", "del", att.netns.slice("/run/netns/".length)]);
      const r = await c.rt.one("ADD", "membrane-cni", att, { prevResult: ptp.json });
      assert.equal(r.status, 1);
      assert.equal(code(r.stdout), 100, r.stdout);
      assert.match(r.stdout, /names 0 host veths/);
      assert.equal(c.lab.agent.listEndpoints().length, before, "no endpoint");
      assert.deepEqual(await c.lab.agent.datapathDiff(), []);
      assert.deepEqual(await nodeVeths(c), [], "no veth left in the node");
      // The runtime's DEL of the chain then succeeds for both plugins.
      const del = await c.rt.del(att, ptp.json);
      assert.deepEqual(
        del.map((x) => x.status),
        [0, 0],
        JSON.stringify(del),
      );
    } finally {
      await c.destroy();
    }
  });

  test("an ADD for a namespace that does not exist fails in the first plugin; the runtime's DEL leaves nothing behind", async () => {
    const c = await CniLab.start("bridge", "10.89.6.0/24");
    try {
      const att = {
        containerId: `${c.prefix}none`,
        netns: `/run/netns/${c.prefix}-none`,
        ifname: "eth0",
        args: "IgnoreUnknown=1;K8S_POD_NAME=none",
      };
      const r = await c.rt.add(att);
      assert.equal(r.ok, false);
      assert.equal(r.runs.length, 1, "membrane-cni not reached");
      const del = await c.rt.del(att, undefined);
      assert.deepEqual(
        del.map((x) => x.status),
        [0, 0],
        JSON.stringify(del),
      );
      assert.equal(c.lab.agent.listEndpoints().length, 0);
      assert.deepEqual(await nodeVeths(c), []);
    } finally {
      await c.destroy();
    }
  });

  test("DEL of an attachment never added succeeds and changes nothing; CHECK of it is refused", async () => {
    const c = await CniLab.start("ptp", "10.89.7.0/24");
    try {
      const att = { containerId: "never", netns: "/run/netns/never", ifname: "eth0" };
      const del = await c.rt.one("DEL", "membrane-cni", att);
      assert.deepEqual([del.status, del.stdout], [0, ""]);
      const check = await c.rt.one("CHECK", "membrane-cni", att, { prevResult: { cniVersion: "1.0.0" } });
      assert.equal(check.status, 1);
      assert.equal(code(check.stdout), 100);
      assert.match(check.stdout, /no endpoint for it/);
    } finally {
      await c.destroy();
    }
  });

  test("CHECK passes for an added container and fails once its host veth is gone; GC forgets the attachments not listed", async () => {
    const c = await CniLab.start("ptp", "10.89.8.0/24");
    try {
      const a = await c.add("one", "");
      await c.add("two", "");
      const ok = await c.rt.one("CHECK", "membrane-cni", a.att, { prevResult: a.result });
      assert.deepEqual([ok.status, ok.stdout], [0, ""], ok.stdout);
      const host = c.lab.agent.getEndpoint("default", "one").hostIfname;
      await c.lab.ip(["-n", c.lab.node, "link", "del", host]);
      const broken = await c.rt.one("CHECK", "membrane-cni", a.att, { prevResult: a.result });
      assert.equal(code(broken.stdout), 100);
      assert.match(broken.stdout, new RegExp(`host interface ${host} is gone`));
      const gc = await c.rt.one("GC", "membrane-cni", a.att, {
        "cni.dev/valid-attachments": [{ containerID: `${c.prefix}two`, ifname: "eth0" }],
      });
      assert.deepEqual([gc.status, gc.stdout], [0, ""], gc.stdout);
      assert.deepEqual(
        c.lab.agent.listEndpoints().map((e) => e.name),
        ["two"],
      );
      assert.deepEqual(await c.lab.agent.datapathDiff(), []);
    } finally {
      await c.destroy();
    }
  });

  test("a container gone without a DEL reaching the agent leaves a stale endpoint that a new ADD with its name and address replaces; a live one is never replaced", async () => {
    const c = await CniLab.start("ptp", "10.89.12.0/24");
    try {
      const old = await c.add("web", "MEMBRANE_LABELS=app:old");
      const stale = c.lab.agent.getEndpoint("default", "web");
      // The runtime lost the container while the agent was down: namespace and veth gone, no DEL.
      await c.lab.ip(["netns", "del", old.att.netns.slice("/run/netns/".length)]);
      const att = {
        ...(await c.sandbox("web2")),
        args: "IgnoreUnknown=1;K8S_POD_NAME=web;MEMBRANE_LABELS=app:new",
      };
      const live = await c.add("live", "");
      const r = await c.rt.add(att);
      assert.ok(r.ok, r.failed?.stdout);
      const ep = c.lab.agent.getEndpoint("default", "web");
      assert.deepEqual(
        [ep.labels["app"], ep.id === stale.id && ep.hostIfname === stale.hostIfname],
        ["new", false],
      );
      assert.ok(
        c.lab.logs.some((l) => l["msg"] === "stale cni endpoint dropped" && l["endpoint"] === "default/web"),
      );
      // A second ADD under the live container's name is refused: its veth is there.
      const dup = { ...(await c.sandbox("dup")), args: "IgnoreUnknown=1;K8S_POD_NAME=live" };
      const refused = await c.rt.add(dup);
      assert.equal(refused.ok, false);
      assert.match(refused.failed?.stdout ?? "", /endpoint default\/live exists/);
      assert.equal(c.lab.agent.getEndpoint("default", "live").ipv4, containerIp(live.result));
      await c.rt.del(dup, refused.result);
      await c.rt.del(att, r.result);
    } finally {
      await c.destroy();
    }
  });

  test("with the agent down, ADD fails closed (11) and the runtime's DEL unwires the container: no network rather than an unenforced one", async () => {
    const c = await CniLab.start("ptp", "10.89.9.0/24");
    try {
      await c.lab.stopAgent();
      const att = { ...(await c.sandbox("down")), args: "IgnoreUnknown=1;K8S_POD_NAME=down" };
      const r = await c.rt.add(att);
      assert.equal(r.ok, false);
      assert.equal(code(r.failed?.stdout ?? "{}"), 11, r.failed?.stdout);
      assert.match(r.failed?.stdout ?? "", /Cannot reach the agent/);
      const status = await c.rt.one("STATUS", "membrane-cni", att);
      assert.equal(code(status.stdout), 50);
      // DEL of membrane-cni needs the agent too (11), ptp's DEL unwires anyway.
      const del = await c.rt.del(att, r.result);
      assert.deepEqual(
        del.map((x) => x.status),
        [1, 0],
      );
      assert.deepEqual(await nodeVeths(c), [], "the container has no network");
    } finally {
      await c.destroy();
    }
  });
});
