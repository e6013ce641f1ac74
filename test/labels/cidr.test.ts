import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { containsAddr, containsPrefix, parsePrefix, prefixString } from "../../src/labels/cidr.js";

describe("prefixes", () => {
  const parse: { name: string; text: string; bare?: boolean; want: string | undefined }[] = [
    { name: "IPv4 prefix", text: "10.0.0.0/8", want: "10.0.0.0/8" },
    { name: "host bits are cleared", text: "10.1.2.3/8", want: "10.0.0.0/8" },
    { name: "bare IPv4 address is /32 when allowed", text: "1.2.3.4", bare: true, want: "1.2.3.4/32" },
    { name: "bare address rejected when not allowed", text: "1.2.3.4", want: undefined },
    { name: "IPv6 prefix", text: "fd00::/64", want: "fd00::/64" },
    { name: "bare IPv6 address is /128", text: "fd00::1", bare: true, want: "fd00::1/128" },
    { name: "prefix length above 32 rejected", text: "10.0.0.0/33", want: undefined },
    { name: "IPv6 length above 128 rejected", text: "fd00::/129", want: undefined },
    { name: "shorthand IPv4 rejected", text: "10.1/16", want: undefined },
    { name: "garbage rejected", text: "ten.0.0.0/8", want: undefined },
    { name: "negative length rejected", text: "10.0.0.0/-1", want: undefined },
    { name: "zero prefix accepted", text: "0.0.0.0/0", want: "0.0.0.0/0" },
  ];
  for (const c of parse) {
    test(`parse: ${c.name}`, () => {
      const p = parsePrefix(c.text, c.bare ?? false);
      assert.equal(p ? prefixString(p) : undefined, c.want);
    });
  }
  const p = (s: string) => parsePrefix(s, true)!;
  test("a /16 inside a /8 is contained", () => assert.ok(containsPrefix(p("10.0.0.0/8"), p("10.1.0.0/16"))));
  test("a /8 is not inside a /16", () => assert.ok(!containsPrefix(p("10.1.0.0/16"), p("10.0.0.0/8"))));
  test("families never contain each other", () => assert.ok(!containsPrefix(p("0.0.0.0/0"), p("fd00::/8"))));
  test("an address inside the prefix", () => assert.ok(containsAddr(p("192.168.0.0/16"), "192.168.3.4")));
  test("an address outside the prefix", () => assert.ok(!containsAddr(p("192.168.0.0/16"), "192.169.0.1")));
});
