/**
 * The SPIFFE CA and provider, with a clock the test moves: SVIDs that follow the rules (the
 * validator accepts them), rotation at half life with listeners told, root rotation with an
 * overlap in which both roots are in the bundle, the root key file (0600, refused if readable by
 * others or for another trust domain), and no private key in JSON or inspect output.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { describe, test } from "node:test";
import pino from "pino";
import { MembraneError } from "../../src/errors.js";
import { CaFile } from "../../src/spiffe/ca-file.js";
import { SvidProvider, type SpiffeEvent } from "../../src/spiffe/provider.js";
import { validateX509Svid } from "../../src/spiffe/validate.js";

const TD = "sp.test";
const H = 3_600_000;
const D = 24 * H;
const logger = pino({ level: "silent" });

async function withDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "sp-ca-"));
  try {
    return await f(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function clock(start = Date.now()): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe("SPIFFE CA and provider", () => {
  test("an issued SVID follows the rules, names spiffe://<td>/identity/<n>, lives an hour and rotates at half life", async () => {
    const c = clock();
    const sp = await SvidProvider.start({ trustDomain: TD, logger, now: c.now, timers: false });
    const events: SpiffeEvent[] = [];
    sp.subscribe((e) => events.push(e));
    const s = await sp.ensure(4242);
    assert.equal(s.spiffeId, "spiffe://sp.test/identity/4242");
    const v = validateX509Svid(s.chain, sp.bundle(), { trustDomain: TD, now: c.now() });
    assert.equal(v.id.uri, s.spiffeId);
    const leaf = new X509Certificate(s.chain[0] as Buffer);
    assert.equal(Date.parse(leaf.validTo) - c.now(), H - (c.now() % 1000)); // X.509 times are whole seconds
    assert.deepEqual(events, [{ kind: "svid", identity: 4242 }]);
    c.advance(H / 2 - 1000);
    await sp.tick();
    assert.equal(sp.current(4242)?.serial, s.serial, "not yet at half life");
    c.advance(2000);
    await sp.tick();
    const s2 = sp.current(4242);
    assert.ok(s2 && s2.serial !== s.serial, "rotated at half life");
    assert.equal(events.length, 2);
    // The key is in no JSON, no inspect output.
    const shown = JSON.stringify(s2) + inspect(s2) + JSON.stringify(sp.view());
    assert.ok(!shown.includes(s2.privateKeyPkcs8().toString("base64").slice(0, 40)));
    assert.ok(!/PRIVATE|x509SvidKey|"key"/.test(shown), shown);
    sp.stop();
  });

  test("root rotation: the new root is in the bundle before it signs, the old one until its SVIDs expired", async () => {
    const c = clock();
    const sp = await SvidProvider.start({
      trustDomain: TD,
      logger,
      now: c.now,
      timers: false,
      rootTtlMs: 10 * D,
    });
    const bundles: number[] = [];
    sp.subscribe((e) => e.kind === "bundle" && bundles.push(sp.bundle().length));
    const old = await sp.ensure(300);
    const states = (): string[] => (sp.view()["roots"] as { state: string }[]).map((r) => r.state);
    c.advance(5 * D + 60_000); // past half the root's life: a new root is prepared
    await sp.tick();
    assert.deepEqual(states(), ["active", "prepared"]);
    const during = await sp.rotate(300); // still signed by the old root during the overlap
    assert.ok(validateX509Svid(during.chain, sp.bundle(), { trustDomain: TD, now: c.now() }));
    assert.notEqual(during.serial, old.serial);
    c.advance(H + 1000); // the overlap (one SVID life) is over: the new root signs
    await sp.tick();
    assert.deepEqual(states(), ["retiring", "active"]);
    const after = await sp.rotate(300);
    const [oldRoot, newRoot] = sp.bundle().map((d) => new X509Certificate(d));
    const leafOf = (s: typeof after): X509Certificate => new X509Certificate(s.chain[0] as Buffer);
    assert.ok(leafOf(after).verify((newRoot as X509Certificate).publicKey));
    assert.ok(leafOf(during).verify((oldRoot as X509Certificate).publicKey));
    // The old root is still in the bundle: an SVID it signed validates until its own end.
    assert.ok(validateX509Svid(during.chain, sp.bundle(), { trustDomain: TD, now: c.now() - 5000 }));
    c.advance(H + 1000); // every SVID of the old root has expired: it leaves the bundle
    await sp.tick();
    assert.deepEqual(states(), ["active"]);
    assert.deepEqual(bundles, [2, 2, 1]);
    assert.throws(() => validateX509Svid(during.chain, sp.bundle(), { trustDomain: TD, now: c.now() - 2 * H }), /not signed by a root/); // prettier-ignore
    sp.stop();
  });

  test("the root key file: 0600, read back on restart, refused when others may read it or for another trust domain", async () => {
    await withDir(async (dir) => {
      const file = new CaFile(join(dir, "spiffe"));
      const a = await SvidProvider.start({ trustDomain: TD, logger, file, timers: false });
      const st = await stat(file.path);
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal((await stat(join(dir, "spiffe"))).mode & 0o777, 0o700);
      const b = await SvidProvider.start({ trustDomain: TD, logger, file, timers: false });
      assert.deepEqual(b.bundle(), a.bundle(), "the same root after a restart");
      await assert.rejects(
        SvidProvider.start({ trustDomain: "other.test", logger, file, timers: false }),
        (e: unknown) => e instanceof MembraneError && e.code === "SPIFFE_CA_FAILED" && /for trust domain sp\.test/.test(e.message), // prettier-ignore
      );
      await chmod(file.path, 0o640);
      await assert.rejects(
        SvidProvider.start({ trustDomain: TD, logger, file, timers: false }),
        (e: unknown) =>
          e instanceof MembraneError && /mode is 640/.test(e.message) && e.message.includes(file.path),
      );
      const text = await readFile(file.path, "utf8");
      await chmod(file.path, 0o600);
      await writeFile(file.path, text.replace(/"key":"[A-Za-z0-9+/]{20}/, '"key":"AAAAAAAAAAAAAAAAAAAA'));
      await assert.rejects(
        SvidProvider.start({ trustDomain: TD, logger, file, timers: false }),
        (e: unknown) => {
          const m = (e as Error).message;
          return e instanceof MembraneError && e.code === "SPIFFE_CA_FAILED" && !m.includes("AAAAAAAAAAAA");
        },
      );
      a.stop();
      b.stop();
    });
  });
});
