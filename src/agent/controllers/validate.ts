/** Checks of names and ports that the agent's controllers share. */
import { MembraneError } from "../../errors.js";
import type { NamedPort } from "../../policy/query.js";

const NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function validateName(s: string, what: string): void {
  if (typeof s !== "string" || !NAME_RE.test(s)) {
    throw new MembraneError(
      "ENDPOINT_INVALID",
      `Cannot use ${what} "${String(s)}": use 1-63 lower-case letters, digits and "-", starting and ending alphanumeric`,
    );
  }
}

const PORT_NAME_RE = /^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/;

export function validatePorts(ports: readonly NamedPort[]): void {
  const seen = new Set<string>();
  for (const p of ports) {
    const where = `port "${String(p.name)}"`;
    if (typeof p.name !== "string" || !PORT_NAME_RE.test(p.name)) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot use ${where}: a port name is 1-15 of [a-z0-9-] with a letter`,
      );
    }
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot use ${where}: port ${String(p.port)} is not in 1-65535`,
      );
    }
    if (!["TCP", "UDP", "SCTP"].includes(p.protocol)) {
      throw new MembraneError("ENDPOINT_INVALID", `Cannot use ${where}: protocol must be TCP, UDP or SCTP`);
    }
    if (seen.has(`${p.name}/${p.protocol}`))
      throw new MembraneError("ENDPOINT_INVALID", `Cannot use ${where} twice`);
    seen.add(`${p.name}/${p.protocol}`);
  }
}

export function epKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
