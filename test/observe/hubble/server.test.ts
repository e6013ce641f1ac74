/**
 * The Observer API over a ring, on a unix socket (no root): Hubble's filter
 * semantics, number/first, since/until, a lapped or live follow, and a filter
 * field this server does not evaluate refused rather than ignored.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Client, credentials, status, type ServiceError } from "@grpc/grpc-js";
import { HubbleClient } from "../../../src/observe/hubble/client.js";
import { HubbleServer } from "../../../src/observe/hubble/server.js";
import { FlowRing } from "../../../src/observe/ring.js";
import type { ObserveRequest } from "../../../src/observe/flags.js";
import { SAMPLES, NAMES } from "../samples.js";

async function withServer(body: (addr: string, ring: FlowRing) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "hb-grpc-"));
  const ring = new FlowRing({ capacity: 100, nodeName: "node1" });
  for (const n of NAMES) ring.pushFlow(SAMPLES[n]!);
  const server = new HubbleServer({
    source: { nodeName: "node1", version: "v", ring },
    socketPath: join(dir, "h.sock"),
  });
  try {
    await server.start();
    await body(`unix:${join(dir, "h.sock")}`, ring);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The times (ms) of the flows answered (protojson normalises the text of a time). */
async function get(addr: string, req: Partial<ObserveRequest>): Promise<number[]> {
  const c = new HubbleClient(addr);
  const out: number[] = [];
  try {
    await c.getFlows({ filter: {}, follow: false, ...req }, (j) => {
      const f = j["flow"] as { Summary?: string; time?: string } | undefined;
      out.push(Date.parse(f?.time ?? ""));
    });
  } finally {
    c.close();
  }
  return out;
}

const timeOf = (n: string): number => Date.parse(SAMPLES[n]!.time);

describe("HubbleServer", () => {
  test("whitelist filters are ORed, fields inside one ANDed, blacklist excludes; number is the last N", () =>
    withServer(async (addr) => {
      const all = await get(addr, {});
      assert.equal(all.length, NAMES.length);
      const dropped = await get(addr, { filter: { allowlist: [{ verdict: ["DROPPED"] }] } });
      const droppedIngress = await get(addr, {
        filter: { allowlist: [{ verdict: ["DROPPED"], traffic_direction: ["INGRESS"] }] },
      });
      assert.ok(droppedIngress.length > 0 && droppedIngress.length <= dropped.length);
      const either = await get(addr, {
        filter: { allowlist: [{ verdict: ["DROPPED"] }, { protocol: ["http"] }] },
      });
      assert.ok(either.includes(timeOf("http")) && either.includes(timeOf("deny")));
      const notDropped = await get(addr, { filter: { denylist: [{ verdict: ["DROPPED"] }] } });
      assert.equal(notDropped.length + dropped.length, all.length);
      assert.deepEqual(await get(addr, { number: 2 }), all.slice(-2));
    }));

  test("since and until bound the answer by time", () =>
    withServer(async (addr) => {
      const t = timeOf("deny");
      const got = await get(addr, { since: t, until: t });
      assert.deepEqual(got, [timeOf("deny")]);
    }));

  test("follow streams new flows as they are pushed", () =>
    withServer(async (addr, ring) => {
      const c = new HubbleClient(addr);
      const ac = new AbortController();
      const seen: number[] = [];
      const done = c.getFlows(
        { filter: { allowlist: [{ verdict: ["DROPPED"] }] }, follow: true },
        (j) => {
          seen.push(Date.parse((j["flow"] as { time: string }).time));
          ac.abort();
        },
        ac.signal,
      );
      // The stream takes new flows from when the server has subscribed it, which a loaded machine
      // may delay: push until one arrives (a safety net of 30 s ends the call, and the check fails).
      const pusher = setInterval(
        () => ring.pushFlow({ ...SAMPLES.deny!, time: "2030-01-01T00:00:00.000Z" }),
        100,
      );
      const safety = setTimeout(() => ac.abort(), 30_000);
      try {
        await done;
      } finally {
        clearInterval(pusher);
        clearTimeout(safety);
        c.close();
      }
      const pushed = Date.parse("2030-01-01T00:00:00.000Z");
      assert.ok(seen.length > 0, "a pushed flow was streamed");
      assert.deepEqual(
        seen,
        seen.map(() => pushed),
        "only flows pushed after the call (the ring's own DROPPED flow is older)",
      );
    }));

  test("a filter field Hubble has and this server does not evaluate (source_fqdn) is refused, not ignored", () =>
    withServer(async (addr) => {
      // GetFlowsRequest{whitelist: [FlowFilter{source_fqdn (7): "x"}]}, encoded by hand.
      const filter = Buffer.from([0x3a, 0x01, 0x78]);
      const req = Buffer.concat([Buffer.from([0x32, filter.length]), filter]);
      const c = new Client(addr, credentials.createInsecure());
      const s = c.makeServerStreamRequest(
        "/observer.Observer/GetFlows",
        (b: Buffer) => b,
        (b: Buffer) => b,
        req,
      );
      const err = await new Promise<ServiceError>((resolve) => {
        s.on("data", () => undefined);
        s.on("error", resolve);
        s.on("end", () => resolve({ code: status.OK } as ServiceError));
      });
      c.close();
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.match(err.details, /whitelist\[0\] field #7/);
    }));

  test("a bad filter value is refused, naming the field", () =>
    withServer(async (addr) => {
      await assert.rejects(get(addr, { filter: { allowlist: [{ source_port: ["http"] }] } }), /source_port/);
    }));
});
