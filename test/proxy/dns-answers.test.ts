/**
 * The proxy's held DNS answers (src/proxy/runtime/dns-answers.ts): an answer
 * whose every (name, ip) the agent holds long enough is released without the
 * round trip and told to the agent in passing; anything else, or anything the
 * agent withdrew, goes the whole way again. The clock is the test's own.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AgentAnswers, HELD_MARGIN_MS, SEEN_FLUSH_MS } from "../../src/proxy/runtime/dns-answers.js";
import type { FromProxy } from "../../src/proxy/runtime/protocol.js";

const HOUR = 3600_000;

function setup() {
  const sent: FromProxy[] = [];
  let now = 1_000_000;
  const answers = new AgentAnswers(
    (m) => sent.push(m),
    () => now,
  );
  /** Asks, and answers the dns-answer it sent as the agent would (ok, held until `until`). */
  const learn = async (name: string, ips: string[], until: number | undefined): Promise<void> => {
    const p = answers.onAnswer("ns/client", name, ips, 30);
    assert.ok(p instanceof Promise, `${name}: asked the agent`);
    const m = sent.at(-1);
    assert.equal(m?.type, "dns-answer");
    answers.done((m as { id: number }).id, true, until);
    await p;
  };
  const asks = (name: string, ips: string[]): boolean => {
    const before = sent.length;
    const p = answers.onAnswer("ns/client", name, ips, 30);
    p?.catch(() => undefined);
    assert.equal(
      p instanceof Promise,
      sent.length === before + 1,
      "a promise exactly when a dns-answer went",
    );
    return p instanceof Promise;
  };
  return { sent, answers, learn, asks, now: () => now, advance: (ms: number) => (now += ms) };
}

describe("held DNS answers (proxy side)", () => {
  test("an answer the agent holds for long enough is released without asking, any case or trailing dot", async () => {
    const s = setup();
    await s.learn("api.example.com.", ["198.51.100.7", "198.51.100.8"], s.now() + HOUR);
    assert.equal(s.asks("API.example.com", ["198.51.100.8", "198.51.100.7"]), false);
    assert.deepEqual(s.answers.stats, { held: 1, asked: 1 });
  });

  test("answers released without asking reach the agent as one dns-seen per repeat, with the longest TTL", async () => {
    const s = setup();
    await s.learn("api.example.com", ["198.51.100.7"], s.now() + HOUR);
    s.answers.onAnswer("ns/a", "api.example.com", ["198.51.100.7"], 30);
    s.answers.onAnswer("ns/b", "api.example.com", ["198.51.100.7"], 300);
    s.answers.onAnswer("ns/a", "api.example.com", ["198.51.100.7"], 60);
    const before = s.sent.length;
    await new Promise((r) => setTimeout(r, SEEN_FLUSH_MS + 100));
    assert.deepEqual(s.sent.slice(before), [
      {
        type: "dns-seen",
        answers: [{ endpoint: "ns/b", name: "api.example.com", ips: ["198.51.100.7"], ttl: 300 }],
      },
    ]);
  });

  test("repeats are told once per (name, address): a new name with the same address, or a new address, is its own", async () => {
    const s = setup();
    for (const name of ["a.example.com", "b.example.com"])
      await s.learn(name, ["198.51.100.7", "198.51.100.8"], s.now() + HOUR);
    const held: [string, string][] = [
      ["a.example.com", "198.51.100.7"],
      ["b.example.com", "198.51.100.7"],
      ["A.example.com.", "198.51.100.7"],
      ["a.example.com", "198.51.100.8"],
      ["b.example.com", "198.51.100.7"],
    ];
    for (const [name, ip] of held) assert.equal(s.asks(name, [ip]), false, `${name} ${ip}: held`);
    const before = s.sent.length;
    await new Promise((r) => setTimeout(r, SEEN_FLUSH_MS + 100));
    const told = s.sent.slice(before).flatMap((m) => (m.type === "dns-seen" ? m.answers : []));
    assert.deepEqual(
      told.map((a) => `${a.name} ${a.ips.join(",")}`),
      ["a.example.com 198.51.100.7", "b.example.com 198.51.100.7", "a.example.com 198.51.100.8"],
    );
  });

  test("an address of the answer the agent does not hold: asked", async () => {
    const s = setup();
    await s.learn("api.example.com", ["198.51.100.7"], s.now() + HOUR);
    assert.equal(s.asks("api.example.com", ["198.51.100.7", "198.51.100.9"]), true);
    assert.equal(s.asks("other.example.com", ["198.51.100.7"]), true, "the same address under another name");
  });

  test("within the margin of the agent's expiry: asked (the answer must extend the life first)", async () => {
    const s = setup();
    await s.learn("api.example.com", ["198.51.100.7"], s.now() + HOUR);
    s.advance(HOUR - HELD_MARGIN_MS - 1);
    assert.equal(s.asks("api.example.com", ["198.51.100.7"]), false);
    s.advance(1);
    assert.equal(s.asks("api.example.com", ["198.51.100.7"]), true);
  });

  test("a dns-done without `until`, or a failed one, holds nothing", async () => {
    const s = setup();
    await s.learn("api.example.com", ["198.51.100.7"], undefined);
    assert.equal(s.asks("api.example.com", ["198.51.100.7"]), true);
    const p = s.answers.onAnswer("ns/client", "b.example.com", ["198.51.100.8"], 30);
    s.answers.done((s.sent.at(-1) as { id: number }).id, false, s.now() + HOUR);
    await assert.rejects(p as Promise<void>, /did not enforce/);
    assert.equal(s.asks("b.example.com", ["198.51.100.8"]), true);
  });

  test("a pair the agent withdrew (dns-forget) is asked again; the other pairs stay held", async () => {
    const s = setup();
    await s.learn("api.example.com", ["198.51.100.7"], s.now() + HOUR);
    await s.learn("b.example.com", ["198.51.100.8"], s.now() + HOUR);
    s.answers.forgetPairs([{ name: "API.example.com.", ip: "198.51.100.7" }]);
    assert.equal(s.asks("api.example.com", ["198.51.100.7"]), true);
    assert.equal(s.asks("b.example.com", ["198.51.100.8"]), false);
  });

  test("an answer released before a dns-forget and not yet told loses the withdrawn pairs (it would not re-teach them)", async () => {
    const s = setup();
    await s.learn("api.example.com", ["198.51.100.7", "198.51.100.8"], s.now() + HOUR);
    await s.learn("b.example.com", ["198.51.100.9"], s.now() + HOUR);
    s.answers.onAnswer("ns/client", "api.example.com", ["198.51.100.7", "198.51.100.8"], 30);
    s.answers.onAnswer("ns/client", "b.example.com", ["198.51.100.9"], 30);
    s.answers.forgetPairs([
      { name: "api.example.com", ip: "198.51.100.7" },
      { name: "b.example.com", ip: "198.51.100.9" },
    ]);
    const before = s.sent.length;
    await new Promise((r) => setTimeout(r, SEEN_FLUSH_MS + 100));
    assert.deepEqual(s.sent.slice(before), [
      {
        type: "dns-seen",
        answers: [{ endpoint: "ns/client", name: "api.example.com", ips: ["198.51.100.8"], ttl: 30 }],
      },
    ]);
  });

  test("a dns-forget without pairs withdraws everything", async () => {
    const s = setup();
    await s.learn("api.example.com", ["198.51.100.7"], s.now() + HOUR);
    s.answers.forgetPairs(undefined);
    assert.equal(s.asks("api.example.com", ["198.51.100.7"]), true);
  });

  test("an answer without addresses is never held", () => {
    const s = setup();
    assert.equal(s.asks("api.example.com", []), true);
  });
});
