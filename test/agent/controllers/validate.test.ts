/** Names and named ports the agent's controllers accept (agent/controllers/validate.ts). */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { validateName, validatePorts } from "../../../src/agent/controllers/validate.js";
import type { NamedPort } from "../../../src/policy/query.js";

describe("controller input checks", () => {
  for (const [name, s, ok] of [
    ["a DNS label is a name", "web-1", true],
    ["one character is a name", "a", true],
    ["upper case is refused", "Web", false],
    ["a leading dash is refused", "-web", false],
    ["64 characters are refused", "a".repeat(64), false],
    ["a control character is refused", "web\n", false],
  ] as const) {
    test(name, () => {
      if (ok) validateName(s, "endpoint name");
      else assert.throws(() => validateName(s, "endpoint name"), { code: "ENDPOINT_INVALID" });
    });
  }

  const port = (name: string, p: number, protocol = "TCP"): NamedPort =>
    ({ name, port: p, protocol }) as NamedPort;
  for (const [name, ports, error] of [
    ["named ports with a letter each are accepted", [port("http", 80), port("dns", 53, "UDP")], undefined],
    ["the same name on two protocols is accepted", [port("dns", 53), port("dns", 53, "UDP")], undefined],
    ["a name without a letter is refused", [port("8080", 8080)], /a port name is 1-15/],
    ["port 0 is refused", [port("http", 0)], /port 0 is not in 1-65535/],
    ["an unknown protocol is refused", [port("http", 80, "ICMP")], /protocol must be TCP, UDP or SCTP/],
    ["a name twice on one protocol is refused", [port("http", 80), port("http", 81)], /twice/],
  ] as const) {
    test(name, () => {
      if (!error) validatePorts(ports);
      else assert.throws(() => validatePorts(ports), { code: "ENDPOINT_INVALID", message: error });
    });
  }
});
