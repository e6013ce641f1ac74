/**
 * DNS-learned names (agent/controllers/names.ts): what a DNS answer teaches
 * lives for max(TTL, minimum TTL); an answer already known changes nothing;
 * a burst is enforced together; expiry forgets only what has expired.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { NamesController } from "../../../src/agent/controllers/names.js";
import { testDeps } from "./fake-deps.js";

type Pairs = readonly { name: string; ip: string }[];

function setup(minTtlSeconds = 60, dropping?: (pairs: Pairs) => Promise<void>) {
  const d = testDeps();
  let now = 1_000_000;
  const names = new NamesController(d, { minTtlSeconds, now: () => now, ...(dropping ? { dropping } : {}) });
  return { d, names, advance: (ms: number) => (now += ms), now: () => now };
}

describe("names controller", () => {
  test("a new answer is enforced once and bumps the desired revision", async () => {
    const { d, names } = setup();
    await names.answer("api.example.com.", ["198.51.100.7", "198.51.100.8"], 30);
    assert.equal(d.enforces, 1);
    assert.equal(names.size, 2);
    assert.equal(names.revisions.desired, 1);
  });

  test("an answer already known (any case, trailing dot) touches neither engine nor kernel", async () => {
    const { d, names } = setup();
    await names.answer("api.example.com", ["198.51.100.7"], 30);
    const rev = d.engineRef.revision;
    await names.answer("API.example.com.", ["198.51.100.7"], 30);
    assert.deepEqual([d.enforces, d.engineRef.revision, names.revisions.desired], [1, rev, 1]);
  });

  test("answers arriving while an enforce waits for its turn are enforced together", async () => {
    const { d, names } = setup();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const busy = d.serial(() => gate);
    const burst = ["a", "b", "c", "d"].map((n, i) =>
      names.answer(`${n}.example.com`, [`198.51.100.${i + 1}`], 30),
    );
    release();
    await Promise.all([busy, ...burst]);
    assert.equal(d.enforces, 1);
    assert.equal(names.size, 4);
  });

  test("an address lives for the minimum TTL when the answer's TTL is shorter", async () => {
    const { d, names, advance } = setup(60);
    await names.answer("api.example.com", ["198.51.100.7"], 5);
    advance(59_000);
    await names.expire();
    assert.deepEqual([names.size, d.enforces], [1, 1]);
    advance(1_000);
    await names.expire();
    assert.deepEqual([names.size, d.enforces], [0, 2]);
  });

  test("a repeated answer extends the life of what it repeats", async () => {
    const { names, advance } = setup(60);
    await names.answer("api.example.com", ["198.51.100.7"], 0);
    advance(50_000);
    await names.answer("api.example.com", ["198.51.100.7"], 0);
    advance(50_000);
    await names.expire();
    assert.equal(names.size, 1);
  });

  test("expiry with nothing expired runs no enforce", async () => {
    const { d, names } = setup();
    await names.expire();
    assert.deepEqual([d.enforces, names.revisions.desired], [0, 0]);
  });

  test("forget drops one name's addresses and keeps another name on the same address", async () => {
    const { names } = setup();
    await names.answer("a.example.com", ["198.51.100.7"], 30);
    await names.answer("b.example.com", ["198.51.100.7"], 30);
    await names.forget("A.example.com.", ["198.51.100.7"]);
    assert.equal(names.size, 1);
    assert.equal(names.revisions.desired, 3);
  });

  test("heldUntil: the earliest expiry of the answer's pairs; undefined when one is not held", async () => {
    const { names, advance, now } = setup(60);
    await names.answer("api.example.com", ["198.51.100.7"], 0);
    advance(10_000);
    await names.answer("api.example.com", ["198.51.100.8"], 0);
    assert.equal(names.heldUntil("API.example.com.", ["198.51.100.7", "198.51.100.8"]), now() + 50_000);
    assert.equal(names.heldUntil("api.example.com", ["198.51.100.7", "198.51.100.9"]), undefined);
    assert.equal(names.heldUntil("other.example.com", ["198.51.100.7"]), undefined);
    assert.equal(names.heldUntil("api.example.com", []), undefined);
  });

  // The proxy releases answers it holds without asking (proxy/runtime/dns-answers.ts): it must have
  // withdrawn a pair before the kernel loses it, and no dns-done may grant it again meanwhile.
  for (const [what, run] of [
    ["forget", (n: NamesController) => n.forget("api.example.com", ["198.51.100.7"])],
    ["expiry", (n: NamesController) => n.expire()],
  ] as const) {
    test(`${what}: the proxy withdraws the pair after it stopped counting as held and before the kernel changes`, async () => {
      const seenByHook: unknown[] = [];
      const s = setup(60, (pairs) => {
        seenByHook.push({
          pairs,
          held: s.names.heldUntil("api.example.com", ["198.51.100.7"]),
          enforces: s.d.enforces,
          policyRevision: s.d.engineRef.revision,
        });
        return Promise.resolve();
      });
      const names = s.names;
      await names.answer("api.example.com", ["198.51.100.7"], 0);
      s.advance(60_000);
      const policyRevision = s.d.engineRef.revision;
      await run(names);
      assert.deepEqual(seenByHook, [
        {
          pairs: [{ name: "api.example.com", ip: "198.51.100.7" }],
          held: undefined,
          enforces: 1,
          policyRevision,
        },
      ]);
      assert.notEqual(s.d.engineRef.revision, policyRevision, "then policy forgot it");
      assert.equal(s.d.enforces, 2, "then the kernel");
    });
  }

  test("a proxy that does not withdraw (the hook fails): the pair leaves the kernel anyway", async () => {
    const { d, names } = setup(60, () => Promise.reject(new Error("no answer")));
    await names.answer("api.example.com", ["198.51.100.7"], 30);
    await names.forget("api.example.com", ["198.51.100.7"]);
    assert.deepEqual([names.size, d.enforces], [0, 2]);
  });

  test("when the enforce fails, nothing is recorded as learned and the caller sees the error", async () => {
    const { d, names } = setup();
    d.failWith = new Error("nft refused");
    await assert.rejects(names.answer("api.example.com", ["198.51.100.7"], 30), /nft refused/);
    assert.equal(names.size, 0);
  });
});
