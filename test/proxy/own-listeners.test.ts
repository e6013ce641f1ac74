import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ownListeners } from "../../src/proxy/own-listeners.js";

describe("ownListeners: a proxy's own listeners, against which original destinations are checked", () => {
  test("an address and port of its own; another port, another address, or port 0 are not", () => {
    const own = ownListeners(["10.1.0.1", "fd00::1"], [15001, 15053, 0]);
    assert.equal(own("10.1.0.1", 15001), true);
    assert.equal(own("10.1.0.1", 15053), true);
    assert.equal(own("fd00::1", 15001), true);
    assert.equal(own("10.1.0.1", 80), false);
    assert.equal(own("10.1.0.2", 15001), false);
    assert.equal(own("10.1.0.1", 0), false, "port 0 (not yet bound) is nobody's listener");
  });

  test("an IPv4-mapped IPv6 address is its IPv4 address, on either side", () => {
    assert.equal(ownListeners(["10.1.0.1"], [15001])("::ffff:10.1.0.1", 15001), true);
    assert.equal(ownListeners(["::ffff:10.1.0.1"], [15001])("10.1.0.1", 15001), true);
  });

  test("a listener on every address is reached on any address with its port", () => {
    for (const any of ["0.0.0.0", "::"]) {
      const own = ownListeners([any], [15053]);
      assert.equal(own("192.0.2.7", 15053), true, any);
      assert.equal(own("2001:db8::7", 15053), true, any);
      assert.equal(own("192.0.2.7", 53), false, any);
    }
  });
});
