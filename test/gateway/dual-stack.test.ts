/**
 * Which addresses a Gateway is served on (dual-stack.ts) and which source
 * address a backend connection leaves from (source.ts), without the network.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { servedAddresses } from "../../src/gateway/dual-stack.js";
import { sourceFor } from "../../src/gateway/source.js";

const NODE = ["10.0.0.9", "fd00::9"];
const asks = (...addresses: string[]): { addresses: { value: string }[] } => ({
  addresses: addresses.map((value) => ({ value })),
});

describe("gateway dual stack", () => {
  test("a Gateway without spec.addresses: both families, IPv4 first; one on a single-stack node", () => {
    assert.deepEqual(servedAddresses({ gateway: asks(), address: "10.0.0.9" }, NODE), NODE);
    assert.deepEqual(servedAddresses({ gateway: asks(), address: "10.0.0.9" }, ["10.0.0.9"]), ["10.0.0.9"]);
  });

  test("a Gateway naming an address: that one alone; none usable: none", () => {
    assert.deepEqual(servedAddresses({ gateway: asks("fd00::9"), address: "fd00::9" }, NODE), ["fd00::9"]);
    assert.deepEqual(servedAddresses({ gateway: asks("10.0.0.9"), address: "10.0.0.9" }, NODE), ["10.0.0.9"]);
    assert.deepEqual(servedAddresses({ gateway: asks("10.9.9.9"), address: undefined }, NODE), []);
  });

  test("source per family; a family without its own address gets the other's (the connect fails: closed)", () => {
    const both = { localAddress: "10.0.0.9", localAddress6: "fd00::9" };
    assert.deepEqual(sourceFor("fd00::5", both), { localAddress: "fd00::9" });
    assert.deepEqual(sourceFor("10.0.0.5", both), { localAddress: "10.0.0.9" });
    assert.deepEqual(sourceFor("fd00::5", { localAddress: "10.0.0.9" }), { localAddress: "10.0.0.9" });
    assert.deepEqual(sourceFor("10.0.0.5", { localAddress6: "fd00::9" }), { localAddress: "fd00::9" });
    assert.deepEqual(sourceFor("fd00::5", {}), {});
  });
});
