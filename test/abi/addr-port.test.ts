/**
 * The brokers' one guard of an address and port from an unprivileged asker (src/abi/addr-port.ts):
 * what a socket prints passes; everything in HOSTILE_ADDR_PORTS is refused; `exact` also refuses
 * any key beside the two (the mTLS tunnel sends exactly these), while the proxy's DNS path may pass
 * a datagram's rinfo (family and size beside them).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isAddrPort } from "../../src/abi/addr-port.js";
import { HOSTILE_ADDR_PORTS } from "./hostile-addr-ports.js";

describe("isAddrPort", () => {
  for (const ok of [
    { address: "10.0.0.2", port: 53 },
    { address: "10.0.0.2", port: 0 },
    { address: "10.0.0.2", port: 65535 },
    { address: "2001:db8::1", port: 443 },
    { address: "::ffff:10.0.0.2", port: 80 },
    { address: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", port: 80 },
  ])
    test(`accepts ${ok.address} port ${ok.port}, also exact`, () => {
      assert.equal(isAddrPort(ok), true);
      assert.equal(isAddrPort(ok, true), true);
    });

  for (const h of HOSTILE_ADDR_PORTS)
    test(`refuses ${h.name}`, () => {
      assert.equal(isAddrPort(h.value), false);
      assert.equal(isAddrPort(h.value, true), false);
    });

  test("a datagram's rinfo passes; with exact, an extra key is refused", () => {
    const rinfo = { address: "10.0.0.2", family: "IPv4", port: 5353, size: 40 };
    assert.equal(isAddrPort(rinfo), true);
    assert.equal(isAddrPort(rinfo, true), false);
    assert.equal(isAddrPort({ address: "10.0.0.2", port: 53, constructor: 1 }, true), false);
  });
});
