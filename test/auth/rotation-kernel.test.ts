// SVID rotation and expiry in the kernel, for real (root): an agent with --spiffe and SVIDs that
// live 8 s (rotated at half life, every ~4 s), a policy whose ingress rule requires authentication,
// real TCP connections.
//  - rotation: the pair authenticates again with the new SVID BEFORE the old one goes (make before
//    break): its kernel element is replaced with a later timeout, an open connection of the pair
//    keeps flowing, a new connection passes without waiting;
//  - expiry: the kernel element's timeout is no later than the SVID's notAfter, and the kernel
//    enforces it by itself: with the agent stopped (nobody rotates), the element is gone by the
//    SVID's end and the pair's new connections are refused (the queue has no reader: fail closed).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, test } from "node:test";
import { AgentLab, rootSkipReason, T } from "../agent/e2e/harness.js";
import { runRaw } from "../../src/datapath/exec.js";

const skip = rootSkipReason();
const HELD = 6000;
const SVID_TTL_MS = 8000;

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-auth, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    authentication: {mode: required}
`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, f: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !(await f()); await sleep(100))
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
}

/** A TCP connection from `netns` kept open (a byte every 200 ms, echoed by the probe's listener). */
function hold(
  netns: string,
  host: string,
  port: number,
): { echoes: () => number; closed: () => string | undefined; stop: () => void } {
  // prettier-ignore
  // prettier-ignore
  const js = `const s=require("net").connect(${port},"${host}");let t;s.on("connect",()=>{t=setInterval(()=>s.write("x"),200)});s.on("data",()=>process.stdout.write("e\\n"));const end=(w)=>{clearInterval(t);process.stdout.write("closed "+w+"\\n");process.exit(0)};s.on("error",(e)=>end(e.code));s.on("close",()=>end("close"));`;
  const p = spawn("ip", ["netns", "exec", netns, process.execPath, "-e", js], { stdio: ["ignore", "pipe", "ignore"] }); // prettier-ignore
  let out = "";
  p.stdout.on("data", (d: Buffer) => (out += d.toString()));
  return {
    echoes: () => (out.match(/^e$/gm) ?? []).length,
    closed: () => /closed (\S+)/.exec(out)?.[1],
    stop: () => p.kill("SIGKILL"),
  };
}

/** The pair elements of the kernel (read with nft, the agent may be stopped): seconds left each. */
async function kernelPairs(lab: AgentLab): Promise<{ key: string; expires: number }[]> {
  const r = await runRaw(["nft", "-j", "list", "set", "inet", `${lab.options.table as string}_auth`, "pairs4"], { netns: lab.node }); // prettier-ignore
  assert.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { nftables: { set?: { elem?: { elem: { val: unknown; expires?: number } }[] } }[] }; // prettier-ignore
  return doc.nftables.flatMap((i) => i.set?.elem ?? []).map((e) => ({ key: JSON.stringify(e.elem.val), expires: e.elem.expires ?? 0 })); // prettier-ignore
}

describe("SVID rotation and expiry in the kernel (needs root)", { skip }, () => {
  test("a rotated SVID re-authenticates the pair before the old one goes (element renewed, connection kept); the element ends with the SVID even with the agent down", async () => {
    const lab = await AgentLab.start("m2ar", { spiffe: { trustDomain: "rot.test", svidTtlMs: SVID_TTL_MS }, engine: { meshAuth: true } }); // prettier-ignore
    let held: ReturnType<typeof hold> | undefined;
    try {
      const server = await lab.endpoint("server", { app: "server" }, { tcp: [80] });
      const client = await lab.endpoint("client", { app: "client" });
      await lab.agent.applyPolicies(POLICY, "auth.yaml");
      const spiffe = lab.agent.spiffe;
      assert.ok(spiffe?.auth, "mutual authentication runs");
      const provider = spiffe.provider;
      const handshakes = (): number => lab.logs.filter((l) => l["msg"] === "pair authenticated").length;

      assert.equal(await client.probe.tcp(server.ip, 80, HELD), "ok");
      await until("the pair's kernel element", async () => (await kernelPairs(lab)).length === 1, 10_000);
      let serial0: string | undefined;
      await until("the server's SVID", () => (serial0 = provider.current(server.view.identity)?.serial) !== undefined, 10_000); // prettier-ignore
      held = hold(client.view.netns, server.ip, 80);
      await until(
        "the held connection to echo",
        () => (held as ReturnType<typeof hold>).echoes() > 0,
        10_000,
      );

      // Rotation (at half life, ~4 s): a new key and certificate for the server's identity; the
      // pair authenticates again with it, and the kernel element gets the new SVID's end.
      const hs0 = handshakes();
      await until("the server's SVID to rotate", () => provider.current(server.view.identity)?.serial !== serial0, 15_000); // prettier-ignore
      await until("the pair to authenticate again", () => handshakes() > hs0, 10_000);
      const svid = provider.current(server.view.identity);
      assert.ok(svid);
      await until(
        "the element renewed to the new SVID's end",
        async () => {
          const [e] = await kernelPairs(lab);
          // The element ends no later than the SVID (the kernel counts whole seconds, rounded down).
          return e !== undefined && e.expires * 1000 <= Math.max(0, svid.notAfter.getTime() - Date.now()) + 1000 && e.expires >= 1; // prettier-ignore
        },
        10_000,
      );
      const echoes = held.echoes();
      await sleep(1000);
      assert.equal(held.closed(), undefined, "the rotation did not cut the pair's connection");
      assert.ok(held.echoes() > echoes, "the pair's connection keeps flowing through the rotation");
      assert.equal(
        await client.probe.tcp(server.ip, 80, T),
        "ok",
        "a new connection passes after the rotation",
      );
      assert.equal((await spiffe.auth.list()).length, 1);
      assert.ok(!JSON.stringify(lab.logs).includes("pair removed"), "no pair was removed by a rotation");

      // Expiry: the agent stops (nobody rotates any more); the kernel removes the element by itself
      // no later than the SVID's end, and the pair's next new connection is refused.
      const ends = Math.min(...[server, client].map((e) => provider.current(e.view.identity)?.notAfter.getTime() ?? 0)); // prettier-ignore
      await lab.stopAgent();
      const [e] = await kernelPairs(lab);
      assert.ok(e, "the element outlives the agent until its timeout");
      assert.ok(Date.now() + e.expires * 1000 <= ends + 1000, `the element (${e.expires} s left) ends no later than the earlier SVID (${ends - Date.now()} ms left)`); // prettier-ignore
      await until("the kernel to expire the element", async () => (await kernelPairs(lab)).length === 0, SVID_TTL_MS + 3000); // prettier-ignore
      assert.ok(Date.now() <= ends + 2000, "the element was gone by the SVID's end");
      assert.notEqual(
        await client.probe.tcp(server.ip, 80, T),
        "ok",
        "an expired pair's new connection is refused",
      );
    } finally {
      held?.stop();
      await lab.destroy();
    }
  });
});
