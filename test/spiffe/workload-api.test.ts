/**
 * The SPIFFE Workload API, for real (needs root): an agent with --spiffe, endpoints created through
 * it, and a gRPC client built from the official workload.proto run inside an endpoint's network
 * namespace. It gets its own identity's X.509-SVID, which chains to the bundle; without the
 * security header it is refused; another endpoint's namespace and the node's reach only their own
 * (or no) socket; a rotation arrives on the open stream; no private key in status or logs.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { X509Certificate, createVerify } from "node:crypto";
import { join } from "node:path";
import { describe, test } from "node:test";
import { validateX509Svid } from "../../src/spiffe/validate.js";
import { AgentLab, rootSkipReason } from "../agent/e2e/harness.js";
import { ROOT } from "../cli/run-cli.js";
import { splitDer } from "./der.js";

const skip = rootSkipReason();
const CLIENT = join(ROOT, "dist/test/spiffe/workload-client.js");
const TD = "sp.test";

type Line = Record<string, unknown>;
interface Svid {
  spiffeId: string;
  chain: string;
  bundle: string;
  key: string;
  sig: string;
}

/** Runs the client in `netns` until it has `n` messages or the call ended; returns its lines. */
function client(netns: string, args: string[], onLine?: (l: Line) => void): Promise<Line[]> {
  return new Promise((resolve, reject) => {
    const p = spawn("nsenter", [`--net=/run/netns/${netns}`, "--", process.execPath, CLIENT, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: Line[] = [];
    let buf = "";
    let err = "";
    p.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const l = JSON.parse(buf.slice(0, i)) as Line;
        buf = buf.slice(i + 1);
        lines.push(l);
        onLine?.(l);
      }
    });
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const t = setTimeout(() => p.kill("SIGKILL"), 60_000); // a safety net
    p.on("exit", (code) => {
      clearTimeout(t);
      if (code === 0 || lines.length > 0) resolve(lines);
      else reject(new Error(`client exited ${code}: ${err}`));
    });
  });
}

const svidArgs = (n = 1): string[] => ["abstract:spiffe-workload-api", "FetchX509SVID", "yes", String(n)];

function firstSvid(lines: Line[]): Svid {
  const svids = lines[0]?.["svids"] as Svid[] | undefined;
  assert.ok(svids?.length === 1, `one SVID expected, got ${JSON.stringify(lines).slice(0, 300)}`);
  return svids[0] as Svid;
}

/** Checks an SVID as a workload would: leaf chains to a bundle root, URI SAN, key matches. */
function checkSvid(s: Svid, identity: number): X509Certificate {
  const id = `spiffe://${TD}/identity/${identity}`;
  assert.equal(s.spiffeId, id);
  const chain = splitDer(Buffer.from(s.chain, "base64"));
  const roots = splitDer(Buffer.from(s.bundle, "base64")).map((d) => new X509Certificate(d));
  const leaf = new X509Certificate(chain[0] as Buffer);
  assert.ok(
    roots.some((r) => leaf.checkIssued(r) && leaf.verify(r.publicKey)),
    "the leaf chains to a bundle root",
  );
  assert.equal(leaf.subjectAltName, `URI:${id}`);
  assert.equal(leaf.ca, false);
  assert.ok(createVerify("sha256").update("proof").verify(leaf.publicKey, Buffer.from(s.sig, "base64")), "key is the leaf's"); // prettier-ignore
  const v = validateX509Svid(chain, splitDer(Buffer.from(s.bundle, "base64")), { trustDomain: TD });
  assert.equal(v.id.uri, id);
  return leaf;
}

describe("SPIFFE Workload API (needs root)", { skip }, () => {
  test("an endpoint fetches its own SVID through its socket; no header, other namespaces, hostile requests refused; rotation streams", async () => {
    const lab = await AgentLab.start("spwl", { spiffe: { trustDomain: TD } });
    try {
      const a = await lab.endpoint("a", { app: "a" });
      const b = await lab.endpoint("b", { app: "b" });
      assert.notEqual(a.view.identity, b.view.identity);

      const sa = firstSvid(await client(a.view.netns, svidArgs()));
      const leafA = checkSvid(sa, a.view.identity);
      const sb = firstSvid(await client(b.view.netns, svidArgs()));
      checkSvid(sb, b.view.identity); // b's socket answers b, never a
      assert.notEqual(sb.key, sa.key);

      // The security header is required: INVALID_ARGUMENT (3).
      const noHeader = await client(a.view.netns, [
        "abstract:spiffe-workload-api",
        "FetchX509SVID",
        "no",
        "1",
      ]);
      assert.deepEqual(
        noHeader.map((l) => l["status"]),
        [3],
      );
      // The node's namespace has no such socket: UNAVAILABLE (14), nothing received.
      const fromNode = await client(lab.node, svidArgs());
      assert.deepEqual(
        fromNode.map((l) => l["status"]),
        [14],
      );
      // Hostile requests: malformed (INTERNAL, 13) and oversized (RESOURCE_EXHAUSTED, 8); still serving.
      const garbage = await client(a.view.netns, [...svidArgs(), "garbage"]);
      assert.deepEqual(
        garbage.map((l) => l["status"]),
        [13],
      );
      const big = await client(a.view.netns, [...svidArgs(), "big"]);
      assert.deepEqual(
        big.map((l) => l["status"]),
        [8],
      );
      // JWT-SVIDs are not served: UNIMPLEMENTED (12).
      const jwt = await client(a.view.netns, ["abstract:spiffe-workload-api", "FetchJWTBundles", "yes", "1"]);
      assert.deepEqual(
        jwt.map((l) => l["status"]),
        [12],
      );

      // Bundles: keyed by the trust domain's ID, the same roots.
      const bl = await client(a.view.netns, ["abstract:spiffe-workload-api", "FetchX509Bundles", "yes", "1"]);
      assert.deepEqual(Object.keys(bl[0]?.["bundles"] as object), [`spiffe://${TD}`]);

      // A rotation yields a new SVID on the open stream.
      const spiffe = lab.agent.spiffe;
      assert.ok(spiffe);
      let rotated = false;
      const lines = await client(a.view.netns, svidArgs(2), (l) => {
        if (l["svids"] && !rotated) void spiffe.provider.rotate(a.view.identity); // once: the second message ends the client
        rotated = true;
      });
      const streamed = lines.filter((l) => l["svids"]);
      assert.equal(streamed.length, 2);
      const s1 = (streamed[0]?.["svids"] as Svid[])[0] as Svid;
      const s2 = (streamed[1]?.["svids"] as Svid[])[0] as Svid;
      const l1 = checkSvid(s1, a.view.identity);
      const l2 = checkSvid(s2, a.view.identity);
      assert.notEqual(l1.serialNumber, l2.serialNumber);
      assert.notEqual(s1.key, s2.key);
      assert.notEqual(l2.serialNumber, leafA.serialNumber);

      // No private key in status (API and CLI) or logs.
      const cli = await new Promise<string>(
        (res, rej) =>
        execFile(process.execPath, [join(ROOT, "bin/membrane.js"), "get", "status", "-o", "json", "--socket", lab.options.socketPath], (e, o) => (e ? rej(e) : res(o))), // prettier-ignore
      );
      const status = JSON.parse(cli) as { spiffe?: { svids: unknown[]; roots: unknown[] } };
      assert.equal(status.spiffe?.roots.length, 1);
      assert.ok((status.spiffe?.svids.length ?? 0) >= 2);
      const seen = [cli, JSON.stringify(lab.agent.status()), JSON.stringify(lab.logs)].join("\n");
      assert.ok(!seen.includes("PRIVATE KEY"));
      for (const k of [sa.key, sb.key, s1.key, s2.key]) assert.ok(!seen.includes(k), "a key leaked");
    } finally {
      await lab.destroy();
    }
  });

  test("a relabelled endpoint's open stream switches to its new identity; a restarted agent serves the endpoints it adopted, same root", async () => {
    const lab = await AgentLab.start("spwr", { spiffe: { trustDomain: TD } });
    try {
      const a = await lab.endpoint("a", { app: "a" });
      let relabelled = false;
      const lines = await client(a.view.netns, svidArgs(2), (l) => {
        if (l["svids"] && !relabelled) void lab.agent.labelEndpoint("default", "a", { app: "a2" }, true);
        relabelled = true;
      });
      const streamed = lines.filter((l) => l["svids"]);
      const now = lab.agent.getEndpoint("default", "a").identity;
      assert.notEqual(now, a.view.identity);
      checkSvid((streamed[0]?.["svids"] as Svid[])[0] as Svid, a.view.identity);
      checkSvid((streamed[1]?.["svids"] as Svid[])[0] as Svid, now); // the new identity's, never the old one again
      const before = firstSvid(await client(a.view.netns, svidArgs()));

      await lab.stopAgent();
      const gone = await client(a.view.netns, svidArgs());
      assert.deepEqual(
        gone.map((l) => l["status"]),
        [14],
        "no agent, no socket",
      );
      await lab.startAgent();
      const after = firstSvid(await client(a.view.netns, svidArgs()));
      checkSvid(after, now);
      assert.equal(after.bundle, before.bundle, "the root survived the restart (state dir file)");
    } finally {
      await lab.destroy();
    }
  });
});
