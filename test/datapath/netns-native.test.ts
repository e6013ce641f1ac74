/**
 * The native namespace helper (src/datapath/netns-native.ts, native/membrane-netns.c; needs root):
 * it makes a namespace with its sysctls and configures links, addresses and routes in any named
 * namespace without a process per step, refuses bad words before anything runs, names the step
 * and the errno of a refusal, and is back in its own namespace after every request. A create after
 * an agent restart (adoptNode) spawns nothing: the helper was started by the adoption.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { createEndpoint, createNode, type EndpointParams } from "../../src/datapath/endpoint.js";
import { ip, run, runRaw } from "../../src/datapath/exec.js";
import { cleanupPrefix, listNetns } from "../../src/datapath/netns.js";
import { batchIn, closeNetnsHelper } from "../../src/datapath/netns-helper.js";
import {
  closeNativeNetns,
  nativeAddNetns,
  nativeApply,
  nativeNetns,
  warmNativeNetns,
} from "../../src/datapath/netns-native.js";
import { closeNodeLinks } from "../../src/datapath/node-links.js";
import { adoptNode } from "../../src/datapath/node-adopt.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";
import { spawned } from "./spawn-spy.js";

const BINARY = fileURLToPath(new URL("../../bin/membrane-netns", import.meta.url));
const skip = rootSkipReason() ?? (nativeNetns() ? undefined : `not built: ${BINARY} (gcc)`);

const sysctl = (ns: string, key: string): Promise<string> =>
  run(["nsenter", `--net=/run/netns/${ns}`, "cat", `/proc/sys/${key}`]).then((out) => out.trim());

async function links(
  ns: string,
): Promise<{ ifname: string; flags: string[]; addr_info: { local: string }[] }[]> {
  return JSON.parse(await ip(["-j", "addr", "show"], ns)) as never;
}

/** The helpers this process started, by their network namespace (must be ours between requests). */
function helperNamespaces(): string[] {
  const out: string[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "latin1");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== process.pid || !readFileSync(`/proc/${d}/cmdline`, "latin1").includes("membrane-netns"))
        continue;
      out.push(readlinkSync(`/proc/${d}/ns/net`));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Runs the binary alone with `input` on stdin; its answer lines. */
async function raw(input: string): Promise<string[]> {
  const c = spawn(BINARY, [], { stdio: ["pipe", "pipe", "inherit"] });
  const lines: string[] = [];
  createInterface({ input: c.stdout }).on("line", (l) => lines.push(l));
  c.stdin.end(input);
  await new Promise((r) => c.on("close", r));
  return lines;
}

describe("native namespace helper (root)", { skip: skip ?? false }, () => {
  test("a namespace is made with its sysctls and configured, both sides, without a process per step", async () => {
    const prefix = uniquePrefix("crn");
    const [a, b] = [`${prefix}-a`, `${prefix}-b`];
    try {
      warmNativeNetns();
      const seen = await spawned(async () => {
        await nativeAddNetns(a, "endpoint a");
        await nativeAddNetns(b, "endpoint b");
      });
      assert.deepEqual(seen, [], "no process spawned for two namespaces");
      for (const k of [
        "net/ipv4/conf/all/rp_filter",
        "net/ipv4/conf/default/rp_filter",
        "net/ipv6/conf/all/accept_dad",
        "net/ipv6/conf/default/accept_dad",
      ])
        // prettier-ignore
        assert.equal(await sysctl(a, k), "0", k);
      await ip(["link", "add", `${prefix}h`, "type", "veth", "peer", "name", "eth0", "netns", b], a);
      const configured = await spawned(() =>
        Promise.all([
          nativeApply(a, [
            { op: "up", ifname: "lo" },
            { op: "addr", ifname: "lo", cidr: "10.211.0.1/32", nodad: false }, // the gateway, as on a node
            { op: "up", ifname: `${prefix}h` },
            { op: "addr", ifname: `${prefix}h`, cidr: "fe80::1/64", nodad: true },
            { op: "route", dst: "10.211.0.5", dev: `${prefix}h` },
            { op: "route", dst: "fd00:211::5", dev: `${prefix}h` },
          ], "configure the host end"), // prettier-ignore
          nativeApply(b, [
            { op: "up", ifname: "lo" },
            { op: "up", ifname: "eth0" },
            { op: "addr", ifname: "eth0", cidr: "10.211.0.5/32", nodad: false },
            { op: "addr", ifname: "eth0", cidr: "fd00:211::5/128", nodad: true },
            { op: "route", dst: "10.211.0.1", dev: "eth0", scopeLink: true },
            { op: "route", dst: "default", dev: "eth0", gateway: "10.211.0.1" },
            { op: "route", dst: "default", dev: "eth0", gateway: "fe80::1" },
          ], "configure eth0"), // prettier-ignore
        ]),
      );
      assert.deepEqual(configured, []);
      const eth0 = (await links(b)).find((l) => l.ifname === "eth0");
      if (eth0 === undefined) throw new Error("no eth0 in the endpoint namespace");
      assert.ok(eth0.flags.includes("UP"));
      assert.deepEqual(eth0.addr_info.map((x) => x.local).filter((x) => !x.startsWith("fe80")).sort(), ["10.211.0.5", "fd00:211::5"]); // prettier-ignore
      assert.match(await ip(["route", "show"], b), /default via 10\.211\.0\.1 dev eth0/);
      assert.match(await ip(["route", "show"], b), /10\.211\.0\.1 dev eth0 scope link/);
      assert.match(await ip(["-6", "route", "show"], b), /default via fe80::1 dev eth0/);
      assert.match(await ip(["route", "show"], a), new RegExp(`10\\.211\\.0\\.5 dev ${prefix}h scope link`));
      assert.match(await ip(["-6", "route", "show"], a), new RegExp(`fd00:211::5 dev ${prefix}h`));
      // And it carries packets: the host end reaches the endpoint over the routes just made.
      assert.equal((await runRaw(["ip", "netns", "exec", a, "ping", "-c1", "-W2", "10.211.0.5"])).status, 0);
      assert.deepEqual(helperNamespaces(), [readlinkSync("/proc/self/ns/net")], "back in its own namespace");
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("a refusal names the step, the namespace and the errno; an existing namespace is left as it was", async () => {
    const prefix = uniquePrefix("crr");
    const a = `${prefix}-a`;
    try {
      await nativeAddNetns(a, "endpoint a");
      await assert.rejects(nativeAddNetns(a, "endpoint a"), (e: Error & { code?: string }) => {
        assert.equal(e.code, "NETNS_FAILED");
        assert.match(e.message, new RegExp(`create netns ${a} for endpoint a`));
        assert.match(e.message, /File exists/);
        return true;
      });
      assert.ok((await listNetns()).includes(a), "the existing namespace stays");
      await assert.rejects(
        nativeApply(a, [{ op: "up", ifname: "lo" }, { op: "addr", ifname: "eth0", cidr: "10.1.1.1/32", nodad: false }], "configure eth0 of endpoint a"), // prettier-ignore
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "NETNS_FAILED");
          assert.match(e.message, new RegExp(`Cannot configure eth0 of endpoint a \\(netns ${a}\\)`));
          assert.match(e.message, /no link eth0/);
          return true;
        },
      );
      await assert.rejects(
        nativeApply(`${prefix}-missing`, [{ op: "up", ifname: "lo" }], "configure x"),
        /No such file/,
      );
      assert.deepEqual(helperNamespaces(), [readlinkSync("/proc/self/ns/net")], "back in its own namespace");
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  const hostile: { name: string; call: () => Promise<void>; message: RegExp }[] = [
    {
      name: "a namespace name starting with '-'",
      call: () => nativeAddNetns("-x", "e"),
      message: /netns "-x" is not/,
    },
    { name: "a namespace name with '/'", call: () => nativeApply("../x", [{ op: "up", ifname: "lo" }], "c"), message: /netns "..\/x" is not/ }, // prettier-ignore
    { name: "an interface name with a space (a second step)", call: () => nativeApply(undefined, [{ op: "up", ifname: "lo up eth9" }], "c"), message: /"lo up eth9" is not a name/ }, // prettier-ignore
    { name: "a newline in an address", call: () => nativeApply(undefined, [{ op: "addr", ifname: "lo", cidr: "1.2.3.4/32\n9 add x", nodad: false }], "c"), message: /is not a name or an address/ }, // prettier-ignore
  ];
  for (const h of hostile) {
    test(`${h.name} is refused before it reaches the helper`, async () => {
      await assert.rejects(h.call(), (e: Error & { code?: string }) => {
        assert.equal(e.code, "NETNS_FAILED");
        assert.match(e.message, h.message);
        return true;
      });
      assert.ok(!(await listNetns()).includes("-x"), "nothing made"); // other runs share the list
    });
  }

  test("the binary checks every word before it runs any step, and answers per request", async () => {
    const prefix = uniquePrefix("crw");
    const a = `${prefix}-a`;
    try {
      const out = await raw(
        [`1 add ${a}`, `2 ns ${a} up lo bogus`, `3 ns ${a} up lo addr lo 1.2.3.4/40 0`, `4 ns ${a} route default lo`, "x y", `5 ns ../etc up lo`].join("\n") + "\n", // prettier-ignore
      );
      assert.equal(out[0], "1 ok");
      assert.match(out[1] ?? "", /^2 err unknown step bogus/);
      assert.match(out[2] ?? "", /^3 err bad address 1\.2\.3\.4\/40/);
      assert.match(out[3] ?? "", /^4 err missing words after route/);
      assert.match(out[4] ?? "", /^0 err bad request/);
      assert.match(out[5] ?? "", /^5 err bad namespace name \.\.\/etc/);
      const lo = (await links(a)).find((l) => l.ifname === "lo");
      assert.ok(!lo?.flags.includes("UP"), "lo stays down: the refused requests ran no step");
      assert.deepEqual(await raw("1 add " + "a".repeat(5000) + "\n2 ns - up lo\n"), [
        "0 err line over 4096 bytes",
      ]);
      // Too many words, or no step: refused with the request's id (its caller fails now, not after 30 s).
      assert.deepEqual(await raw(`7 ns ${a}${" up lo".repeat(200)}\n8\n9 ns ${a} up lo\n`), [
        "7 err bad request: too many words",
        "8 err bad request: no step",
        "9 ok",
      ]);
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("a long list of ops goes as several requests, in order, all applied", async () => {
    const prefix = uniquePrefix("crl");
    const a = `${prefix}-a`;
    try {
      await nativeAddNetns(a, "endpoint a");
      await ip(["link", "add", `${prefix}d`, "type", "veth", "peer", "name", `${prefix}e`], a); // no dummy module here
      const ops = [
        { op: "up" as const, ifname: `${prefix}e` },
        { op: "up" as const, ifname: `${prefix}d` },
        ...Array.from({ length: 300 }, (_, i) => ({
          op: "route" as const,
          dst: `10.212.${Math.floor(i / 250)}.${(i % 250) + 1}`,
          dev: `${prefix}d`,
        })),
      ];
      await nativeApply(a, ops, "300 routes"); // 1,502 words: one request would be refused
      const routes = (await ip(["route", "show"], a)).split("\n").filter((l) => l.startsWith("10.212."));
      assert.equal(routes.length, 300);
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("a request sent right after the helpers are let go is answered by the next one, not failed by the old one's exit", async () => {
    // The old helper exits (status 0) after its stdin closes, which can come after the next
    // request went to the new helper: its exit failed every waiter, the new one's too ("the
    // namespace helper exited (0)": seen in CI under load after an agent restart).
    const prefix = uniquePrefix("crc");
    const a = `${prefix}-a`;
    try {
      await nativeAddNetns(a, "endpoint a");
      for (let i = 0; i < 5; i++) {
        closeNativeNetns();
        await nativeApply(a, [{ op: "up", ifname: "lo" }], `lo up after close ${i}`);
        closeNetnsHelper();
        const r = await batchIn(a, ["link set lo up"], `lo up through the shell after close ${i}`).then(
          () => "ok",
          (e: unknown) => String(e),
        );
        assert.equal(r, "ok");
      }
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("a create after an agent restart (adoptNode) spawns no process", async () => {
    const prefix = uniquePrefix("crs");
    try {
      const spec = { netns: `${prefix}-node`, gateway4: "10.212.0.1", gateway6: "fd00:212::1", podCidr4: "10.212.0.0/24" }; // prettier-ignore
      await createNode(spec);
      // The restart: every helper of the old agent is gone.
      closeNodeLinks(() => true);
      closeNetnsHelper();
      closeNativeNetns();
      const node = await adoptNode(spec);
      const p: EndpointParams = { node, name: "a", netns: `${prefix}-ep-a`, hostIfname: `${prefix}h1`, ipv4: "10.212.0.11", ipv6: "fd00:212::b" }; // prettier-ignore
      const seen = await spawned(() => createEndpoint(p));
      assert.deepEqual(seen, [], "the first create after the restart spawned no process");
      assert.match(await ip(["route", "show"], p.netns), /default via 10\.212\.0\.1 dev eth0/);
      assert.equal(
        (await runRaw(["ip", "netns", "exec", spec.netns, "ping", "-c1", "-W2", "10.212.0.11"])).status,
        0,
      );
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });
});
