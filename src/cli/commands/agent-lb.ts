/** Service address flags of `membrane agent` (issue 16; parsed by src/lb/config.ts). */
import type { Command } from "commander";
import { parseLbFlags } from "../../lb/config.js";
import type { LbConfig } from "../../lb/types.js";

export function addLbFlags(cmd: Command): Command {
  return cmd
    .option("--service-cidr <cidr>", "CIDR ClusterIPs are allocated from (Services without spec.clusterIP); IPv4, IPv6, or one of each for dual-stack, e.g. 10.96.0.0/16,fd00:96::/112 (the first is the primary family)", "10.96.0.0/16") // prettier-ignore
    .option("--lb-pool <cidr>", "CIDR LoadBalancer Services get their address from: IPv4, IPv6, or one of each, e.g. 192.0.2.0/24,2001:db8:5::/112 (a dual-stack Service gets one of each; absent, or no pool of a Service's family: <pending>); with --gateway, each Gateway naming no address gets its own from it too (absent: they share the gateway address)") // prettier-ignore
    .option("--node-port-range <first-last>", "ports NodePort and LoadBalancer Services are allocated from", "30000-32767"); // prettier-ignore
}

/** LbConfig from the parsed command (flags and config file); errors name the flag. */
export function lbFromFlags(cmd: Command, podCidrs: readonly string[]): LbConfig {
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  const s = (k: string): string | undefined => (typeof o[k] === "string" ? o[k] : undefined);
  return parseLbFlags({
    ...(s("serviceCidr") !== undefined ? { serviceCidr: s("serviceCidr") as string } : {}),
    ...(s("lbPool") !== undefined ? { lbPool: s("lbPool") as string } : {}),
    ...(s("nodePortRange") !== undefined ? { nodePortRange: s("nodePortRange") as string } : {}),
    podCidrs,
  });
}
