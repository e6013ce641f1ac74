/**
 * The agent checks what the gateway process sends before it becomes a flow (gateway/from-gateway.ts):
 * a real child process sends hostile events over a real IPC channel (Node's JSON serialisation, as
 * the gateway's), the agent's side (GatewayInbox, as the runner attaches it) refuses each and counts
 * it, a good event passes rebuilt, and each reason is logged once without the bytes that were sent.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, test } from "node:test";
import type { Logger } from "pino";
import { MAX_GATEWAY_EVENTS } from "../../src/gateway/event-batch.js";
import type { GatewayEvent } from "../../src/gateway/exchange.js";
import { GatewayInbox, type GatewayApplied, type GatewayDrop } from "../../src/gateway/from-gateway.js";

const good = {
  listener: "10.0.0.1:80",
  client: { address: "192.0.2.7", port: 40000 },
  method: "GET",
  url: "shop.example/api",
  status: 200,
  route: "shop/web",
  backend: { service: "shop/web", address: "fd00::3", port: 8080 },
  latencyMs: 0.5,
  httpVersion: "HTTP/2",
};
const long = (n: number): string => "A".repeat(n);

/** Each hostile event with the reason it is refused for. */
const hostile: { name: string; event: unknown; why: GatewayDrop }[] = [
  { name: "not an object", event: "GET /", why: "event" },
  { name: "an array", event: [good], why: "event" },
  { name: "null", event: null, why: "event" },
  { name: "no listener", event: { ...good, listener: undefined }, why: "listener" },
  { name: "listener past its bound", event: { ...good, listener: long(60) }, why: "listener" },
  { name: "no client", event: { ...good, client: undefined }, why: "client" },
  { name: "client not an address", event: { ...good, client: { address: "evil.example", port: 1 } }, why: "client" }, // prettier-ignore
  { name: "client with a zone", event: { ...good, client: { address: "fe80::1%eth0", port: 1 } }, why: "client" }, // prettier-ignore
  { name: "client address past 45", event: { ...good, client: { address: `::ffff:${long(50)}`, port: 1 } }, why: "client" }, // prettier-ignore
  { name: "client address empty with no port", event: { ...good, client: { address: "" } }, why: "client" }, // prettier-ignore
  { name: "client port out of range", event: { ...good, client: { address: "192.0.2.7", port: 70000 } }, why: "client" }, // prettier-ignore
  { name: "status as text", event: { ...good, status: "200" }, why: "status" },
  { name: "status negative", event: { ...good, status: -1 }, why: "status" },
  { name: "status past three digits", event: { ...good, status: 1000 }, why: "status" },
  { name: "status not an integer", event: { ...good, status: 200.5 }, why: "status" },
  { name: "negative latency", event: { ...good, latencyMs: -1 }, why: "latency" },
  { name: "latency NaN (null on the wire)", event: { ...good, latencyMs: NaN }, why: "latency" },
  { name: "backend not an address", event: { ...good, backend: { ...good.backend, address: "10.0.0.1; x" } }, why: "backend" }, // prettier-ignore
  { name: "backend port negative", event: { ...good, backend: { ...good.backend, port: -1 } }, why: "backend" }, // prettier-ignore
  { name: "backend without a service", event: { ...good, backend: { address: "10.1.0.2", port: 80 } }, why: "backend" }, // prettier-ignore
  { name: "backend service past its bound", event: { ...good, backend: { ...good.backend, service: long(600) } }, why: "backend" }, // prettier-ignore
  { name: "backend as text", event: { ...good, backend: "10.1.0.2:80" }, why: "backend" },
  { name: "route not text", event: { ...good, route: 7 }, why: "route" },
  { name: "route past its bound", event: { ...good, route: long(600) }, why: "route" },
  { name: "method not text", event: { ...good, method: ["GET"] }, why: "method" },
  { name: "url not text", event: { ...good, url: { host: "x" } }, why: "url" },
  { name: "reason not text", event: { ...good, reason: 5 }, why: "reason" },
  { name: "an HTTP version the gateway does not speak", event: { ...good, httpVersion: "HTTP/3" }, why: "httpVersion" }, // prettier-ignore
];

/** Messages refused before any event is read. */
const hostileMessages: { name: string; message: unknown; why: GatewayDrop }[] = [
  { name: "not an object", message: "events", why: "message" },
  { name: "an unknown type", message: { type: "l7", event: good }, why: "message" },
  { name: "events not an array", message: { type: "events", events: { 0: good } }, why: "events batch" },
  { name: "more events than one batch holds", message: { type: "events", events: Array(MAX_GATEWAY_EVENTS + 1).fill(good) }, why: "events batch" }, // prettier-ignore
  { name: "applied without a version", message: { type: "applied", serving: [] }, why: "applied" },
  { name: "applied serving non-text", message: { type: "applied", version: 1, serving: [{}] }, why: "applied" }, // prettier-ignore
];

/** Sends `messages` from a real child process over its IPC channel; resolves once the inbox read them all. */
async function overIpc(inbox: (m: unknown) => void, messages: unknown[]): Promise<void> {
  // The last message says the others were read (IPC keeps order).
  const end = { type: "applied", version: 999_999, serving: [] };
  const script = `for (const m of JSON.parse(process.argv[1])) process.send(m); process.disconnect();`;
  const child = spawn(process.execPath, ["-e", script, JSON.stringify([...messages, end])], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      child.on("message", (m: unknown) => {
        const a = m as { type?: unknown; version?: unknown };
        inbox(m);
        if (a.type === "applied" && a.version === end.version) resolve();
      });
      child.once("exit", (code) => reject(new Error(`the sender exited (${code}) before the last message`)));
    });
  } finally {
    child.kill("SIGKILL");
  }
}

function newInbox(): {
  inbox: GatewayInbox;
  events: GatewayEvent[];
  applied: GatewayApplied[];
  logged: unknown[];
} {
  const events: GatewayEvent[] = [];
  const applied: GatewayApplied[] = [];
  const logged: unknown[] = [];
  const inbox = new GatewayInbox({
    logger: { warn: (o: unknown, msg?: string) => void logged.push([o, msg]) } as unknown as Pick<
      Logger,
      "warn"
    >,
    onEvent: (e) => events.push(e),
    onApplied: (a) => void (a.version !== 999_999 && applied.push(a)),
  });
  return { inbox, events, applied, logged };
}

describe("the agent checks the gateway process's events (over real IPC)", () => {
  test("a good event passes, rebuilt from its known fields (an extra one left out)", async () => {
    const { inbox, events } = newInbox();
    await overIpc((m) => inbox.receive(m), [{ type: "events", events: [{ ...good, smuggled: "x" }, good] }]);
    assert.deepEqual(events, [good, good]);
    assert.deepEqual(inbox.dropped, {});
  });

  for (const h of hostile)
    test(`refused: ${h.name} (${h.why}); the good events around it pass`, async () => {
      const { inbox, events } = newInbox();
      await overIpc((m) => inbox.receive(m), [{ type: "events", events: [good, h.event, good] }]);
      assert.deepEqual(events, [good, good], "only the hostile event is dropped, not its batch");
      assert.deepEqual(inbox.dropped, { [h.why]: 1 });
    });

  for (const h of hostileMessages)
    test(`refused whole: ${h.name} (${h.why})`, async () => {
      const { inbox, events, applied } = newInbox();
      await overIpc((m) => inbox.receive(m), [h.message]);
      assert.deepEqual(events, []);
      assert.deepEqual(applied, []);
      assert.deepEqual(inbox.dropped, { [h.why]: 1 });
    });

  test("what a client or a backend can cause passes: a reset client (no address), an odd or no status", async () => {
    const { inbox, events } = newInbox();
    const honest = [
      { ...good, client: { address: "", port: 0 } },
      { ...good, status: 999 },
      { ...good, status: 0 },
      { ...good, client: { address: "::ffff:192.0.2.7", port: 1 } },
    ];
    await overIpc((m) => inbox.receive(m), [{ type: "events", events: honest }]);
    assert.deepEqual(events, honest);
    assert.deepEqual(inbox.dropped, {});
  });

  test("a URL longer than flows keep: the event passes without it (a client cannot hide its request)", async () => {
    const { inbox, events } = newInbox();
    await overIpc((m) => inbox.receive(m), [{ type: "events", events: [{ ...good, url: long(5000) }] }]);
    const { url: _, ...rest } = good;
    assert.deepEqual(events, [rest]);
  });

  test("an applied message's error is bounded before the agent logs it", async () => {
    const { inbox, applied } = newInbox();
    await overIpc((m) => inbox.receive(m), [{ type: "applied", version: 3, serving: ["10.0.0.1:80"], error: long(5000) }]); // prettier-ignore
    assert.equal(applied.length, 1);
    assert.equal(applied[0]?.error?.length, 1000);
  });

  test("each reason is counted every time and logged once, with no byte the gateway sent", async () => {
    const { inbox, logged } = newInbox();
    const marker = "ZZ-attacker-bytes";
    const bad = { ...good, status: marker };
    await overIpc(
      (m) => inbox.receive(m),
      [
        { type: "events", events: [bad, bad, { ...good, client: { address: marker, port: 1 } }] },
        { type: "events", events: [bad] },
      ],
    );
    assert.deepEqual(inbox.dropped, { status: 3, client: 1 });
    assert.equal(logged.length, 2, "one line per reason");
    assert.ok(!JSON.stringify(logged).includes(marker), "nothing the gateway sent is echoed");
  });
});
