/**
 * A key rotation asked for (`membrane encryption rotate-key`), one piece of code for WireGuard and
 * IPsec (src/encryption/rotation.ts rotateOnRequest): refused, naming the mode, before the agent
 * started (no rotation yet) and before the rotation was started at attach (the peers could not be
 * told of the new key); done after.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import pino from "pino";
import { loadOrCreateNodeKey } from "../../src/encryption/keys.js";
import { KeyRotation, rotateOnRequest } from "../../src/encryption/rotation.js";
import { isMembraneError } from "../../src/errors.js";

test("refused before the agent started and before attach, naming the mode; done after", async () => {
  const dir = mkdtempSync(join(tmpdir(), "m17-rot-"));
  const wg = join(dir, "wireguard");
  const r = new KeyRotation(
    {
      dir: wg,
      logger: pino({ level: "silent" }),
      announceMs: 0,
      switchTo: async () => {},
      publish: async () => {},
    },
    loadOrCreateNodeKey(wg),
  );
  try {
    const refused = (label: string) => (e: unknown) =>
      isMembraneError(e) && e.code === "ENCRYPTION_FAILED" && e.message === `Cannot rotate the ${label} key: the agent is still starting`; // prettier-ignore
    await assert.rejects(rotateOnRequest(undefined, "IPsec"), refused("IPsec"));
    await assert.rejects(rotateOnRequest(r, "WireGuard"), refused("WireGuard"));
    assert.equal(r.rotations, 0, "nothing rotated");
    r.start();
    const done = await rotateOnRequest(r, "WireGuard");
    assert.notEqual(done.publicKey, done.previousPublicKey);
  } finally {
    await r.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
