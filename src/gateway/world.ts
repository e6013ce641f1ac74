/** The compile input (compile.ts GatewayWorld) from what the agent sends and the certificate files. */
import type { GatewayCertificates } from "./certs.js";
import type { GatewayWorld } from "./compile.js";
import type { GatewayInputs } from "./protocol.js";

export function worldOf(inputs: GatewayInputs, certs: GatewayCertificates, now: string): GatewayWorld {
  return {
    resources: inputs.resources,
    hasService: (ns: string, name: string) => inputs.services[`${ns}/${name}`] !== undefined,
    namespaceLabels: (ns: string) => inputs.namespaceLabels[ns] ?? {},
    certificateProblem: (ns: string, name: string) => certs.problem(ns, name),
    servicePort: (ns: string, name: string, port: number) =>
      inputs.servicePorts?.[`${ns}/${name}`]?.[String(port)],
    addresses: inputs.addresses,
    ...(inputs.gatewayAddresses ? { gatewayAddresses: inputs.gatewayAddresses } : {}),
    ...(inputs.gatewayAddressesRefused ? { gatewayAddressesRefused: inputs.gatewayAddressesRefused } : {}),
    now,
  };
}
