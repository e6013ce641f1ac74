import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { globMatch } from "../../src/observe/filter.js";

describe("node-name globs (linear, no regular expression)", () => {
  const cases: [string, string, string, boolean][] = [
    ["an exact name matches itself", "node-a", "node-a", true],
    ["an exact name does not match a longer one", "node-a", "node-ab", false],
    ["a lone star matches anything", "*", "anything", true],
    ["a lone star matches the empty name", "*", "", true],
    ["a prefix glob", "node-*", "node-17", true],
    ["a prefix glob needs the prefix", "node-*", "edge-17", false],
    ["a suffix glob", "*-east", "zone-east", true],
    ["stars in the middle", "a*b*c", "axxbyyc", true],
    ["stars in the middle need every literal, in order", "a*b*c", "axxcyyb", false],
    ["regex metacharacters are literal", "n.de+(1)", "n.de+(1)", true],
    ["a dot is not a wildcard", "n.de", "node", false],
    [
      "a hostile pattern on a long name ends with the right answer",
      "a*".repeat(30) + "b",
      "a".repeat(5000),
      false,
    ],
  ];
  for (const [name, pattern, s, want] of cases) test(name, () => assert.equal(globMatch(pattern, s), want));
});
