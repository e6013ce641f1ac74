/**
 * What a runtime passes in the environment (SPEC.md section 2, "Parameters"),
 * checked per command, and the endpoint identity derived from it.
 *
 *   CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS ──▶ Invocation (error 4 naming the variable)
 *   CNI_ARGS K8S_POD_NAMESPACE, K8S_POD_NAME, MEMBRANE_LABELS ──▶ {namespace, name, labels}
 *
 * MEMBRANE_LABELS is `key:value,key:value`: CNI_ARGS pairs are split on ";"
 * and "=", and the reference plugins (bridge, ptp) refuse a second "=".
 * Pure.
 */
import { isIfname } from "../abi/ifname.js";
import { podEndpointName } from "../labels/pod-name.js";
import { CNI_ERRORS, CniError, quote, type MembranePluginConf } from "./spec.js";

export const COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"] as const;
export type Command = (typeof COMMANDS)[number];

export interface Invocation {
  command: Command;
  containerId: string;
  netns: string;
  ifname: string;
  args: Map<string, string>;
}

/** SPEC.md: alphanumeric start, then alphanumerics, "_", "." or "-". */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

const envError = (name: string, why: string): CniError =>
  new CniError(CNI_ERRORS.invalidEnvironment, "read the environment", `${name} ${why}`);

/** The command and the parameters it requires (ADD/CHECK: all four, DEL: no netns). */
export function parseEnv(env: Readonly<Record<string, string | undefined>>): Invocation {
  const command = env["CNI_COMMAND"];
  if (command === undefined || command === "")
    throw envError(
      "CNI_COMMAND",
      "is not set: membrane-cni is a CNI plugin, run by a container runtime with CNI_COMMAND and the network configuration on stdin (see examples/cni/)",
    );
  if (!(COMMANDS as readonly string[]).includes(command))
    throw envError("CNI_COMMAND", `${quote(command)} is not one of ${COMMANDS.join(", ")}`);
  const cmd = command as Command;
  const needs = cmd === "ADD" || cmd === "CHECK" || cmd === "DEL";
  const containerId = env["CNI_CONTAINERID"] ?? "";
  const netns = env["CNI_NETNS"] ?? "";
  const ifname = env["CNI_IFNAME"] ?? "";
  if (needs) {
    if (!CONTAINER_ID.test(containerId))
      throw envError("CNI_CONTAINERID", `${quote(containerId)} is not a container id`);
    if (!isIfname(ifname)) throw envError("CNI_IFNAME", `${quote(ifname)} is not an interface name`);
    if (cmd !== "DEL" && !netns.startsWith("/")) throw envError("CNI_NETNS", `${quote(netns)} is not a path`);
  }
  return { command: cmd, containerId, netns, ifname, args: parseCniArgs(env["CNI_ARGS"] ?? "") };
}

/** `A=1;B=2` (SPEC.md); a pair without "=" is error 4. */
export function parseCniArgs(s: string): Map<string, string> {
  const out = new Map<string, string>();
  if (s.length > 8192) throw envError("CNI_ARGS", "is longer than 8192 bytes");
  for (const pair of s.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) throw envError("CNI_ARGS", `pair ${quote(pair)} is not KEY=VALUE`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

export interface EndpointIdentity {
  namespace: string;
  name: string;
  labels: Record<string, string>;
}

/**
 * Namespace, name and labels of the endpoint: K8S_POD_NAMESPACE (else the
 * config's namespace, else "default"), K8S_POD_NAME made a valid name (podman
 * names may hold "_" and capitals; else "c-" and the container id's first 12),
 * the config's labels, then runtimeConfig.labels, then MEMBRANE_LABELS.
 */
export function endpointIdentity(inv: Invocation, conf: MembranePluginConf): EndpointIdentity {
  const namespace = inv.args.get("K8S_POD_NAMESPACE") ?? conf.namespace ?? "default";
  const pod = inv.args.get("K8S_POD_NAME") ?? "";
  let name = podEndpointName(pod);
  if (name === "") name = `c-${inv.containerId.toLowerCase().slice(0, 12)}`;
  if (inv.ifname !== "eth0") name = `${name.slice(0, 62 - inv.ifname.length)}-${inv.ifname.toLowerCase()}`;
  const labels: Record<string, string> = { ...(conf.labels ?? {}) };
  const rl = conf.runtimeConfig?.["labels"];
  if (typeof rl === "object" && rl !== null && !Array.isArray(rl)) {
    for (const [k, v] of Object.entries(rl)) if (typeof v === "string") labels[k] = v;
  }
  const ml = inv.args.get("MEMBRANE_LABELS");
  if (ml !== undefined && ml !== "") {
    for (const kv of ml.split(",")) {
      const i = kv.indexOf(":");
      if (i <= 0) throw envError("CNI_ARGS", `MEMBRANE_LABELS entry ${quote(kv)} is not key:value`);
      labels[kv.slice(0, i)] = kv.slice(i + 1);
    }
  }
  return { namespace, name, labels };
}
