/**
 * The validation cache answers exactly as validating again would: a hit only for the same chain,
 * bundle and trust domain, and only while every certificate of the path is valid; a root that
 * leaves the bundle, a leaf past its notAfter (or before its notBefore, or a root that expired
 * first) is validated again and refused.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SvidValidationCache } from "../../src/spiffe/validate-cache.js";
import { goodLeaf, mk, rootOf } from "./certs-fixture.js";

const TD = "td.test";
const H = 3_600_000;

describe("SvidValidationCache", () => {
  test("hits only for the same chain, bundle and trust domain within the path's validity window", async () => {
    const now = Date.now();
    // The root ends before the leaf: the window is the root's end, not the leaf's.
    const root = await rootOf(TD, { notAfter: new Date(now + H / 2) });
    const other = await rootOf(TD, { subject: "CN=other root" });
    const leaf = await mk({ ...goodLeaf(root), notBefore: new Date(now - H / 4) });
    const c = new SvidValidationCache();
    const v = (bundle: Buffer[], at: number, td = TD) => c.validate([leaf.der], bundle, { trustDomain: td, now: at }); // prettier-ignore

    assert.equal(v([root.der], now).id.uri, "spiffe://td.test/identity/300");
    assert.deepEqual(c.stats, { hits: 0, misses: 1 });
    assert.equal(v([root.der], now + 1000).id.uri, "spiffe://td.test/identity/300");
    assert.deepEqual(c.stats, { hits: 1, misses: 1 }, "the same input within the window is a hit");

    // The root left the bundle: validated again, refused.
    assert.throws(() => v([other.der], now), /not signed by a root of the bundle/);
    // Another trust domain: validated again, refused.
    assert.throws(() => v([root.der], now, "other.test"), /trust domain td\.test, not other\.test/);
    // Past the root's end (the leaf itself is still valid): validated again, refused.
    assert.throws(() => v([root.der], now + H / 2 + 1000), /has expired/);
    // Before the leaf's notBefore: validated again, refused.
    assert.throws(() => v([root.der], now - H / 2), /not valid yet/);
    assert.equal(c.stats.hits, 1, "no refused case was answered from the cache");
  });

  test("a miss parses the presented chain only: the bundle's roots are parsed once, ahead with prepare", async () => {
    const root = await rootOf(TD);
    const leaves = await Promise.all(
      [300, 301, 302].map((n) => mk(goodLeaf(root, `spiffe://${TD}/identity/${n}`))),
    );
    const c = new SvidValidationCache();
    c.prepare([root.der, Buffer.from("not a certificate")]);
    assert.equal(c.parsedRoots, 1, "the root parsed ahead; what is not a certificate is not kept");
    for (const l of leaves) assert.match(c.validate([l.der], [root.der], { trustDomain: TD }).id.path, /^\/identity\/30[0-2]$/); // prettier-ignore
    assert.deepEqual(c.stats, { hits: 0, misses: 3 });
    assert.equal(c.parsedRoots, 1, "three misses, the root parsed once");
    // Without prepare: the first miss parses the root and keeps it for the next ones.
    const d = new SvidValidationCache();
    for (const l of leaves) d.validate([l.der], [root.der], { trustDomain: TD });
    assert.deepEqual([d.stats.misses, d.parsedRoots], [3, 1]);
  });
});
