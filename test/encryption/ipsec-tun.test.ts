// charon runs as nobody with CAP_NET_ADMIN alone: the agent refuses to start it when /dev/net/tun
// is closed to nobody (a machine without udev keeps the kernel's 0600), instead of a charon that
// loads no IPsec backend and never installs an SA. Checked on stand-in files of each mode.
import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { checkTunForCharon } from "../../src/encryption/ipsec/charon.js";
import { isMembraneError } from "../../src/errors.js";

const root = process.getuid?.() === 0;

test("charon's TUN device: open to nobody passes; 0600 root fails naming the mode and the fix; missing fails", () => {
  const dir = mkdtempSync(join(tmpdir(), "membrane-tun-"));
  try {
    const f = join(dir, "tun");
    writeFileSync(f, "");
    chmodSync(f, 0o666);
    checkTunForCharon(f);
    chmodSync(f, 0o600);
    assert.throws(
      () => checkTunForCharon(f),
      (e: unknown) =>
        isMembraneError(e) &&
        /runs as nobody/.test(e.message) &&
        /mode 0600/.test(e.message) &&
        /chmod 0666/.test(e.hint ?? ""),
    );
    chmodSync(f, 0o660);
    assert.throws(() => checkTunForCharon(f), /mode 0660/);
    if (root) {
      chownSync(f, 65534, 0);
      chmodSync(f, 0o600);
      checkTunForCharon(f); // owned by nobody
      chownSync(f, 0, 65534);
      chmodSync(f, 0o660);
      checkTunForCharon(f); // nobody's group
    }
    assert.throws(() => checkTunForCharon(join(dir, "absent")), /does not exist/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
