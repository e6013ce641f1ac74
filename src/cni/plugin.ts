/**
 * membrane-cni: a CNI plugin (spec 1.0.0, 1.1.0), chained or standalone.
 * Chained: the plugin before it (bridge, ptp, ...) wires the container;
 * membrane-cni asks the agent to adopt the host side of the veth as an
 * endpoint and returns once its policy is in the kernel. Standalone (no
 * prevResult: first in the list): the agent wires the container itself
 * (veth into CNI_NETNS, address from its IPAM, routes) and returns the result.
 *
 *   env CNI_* + stdin config ──run()──▶ ADD     POST /v1/cni/attachments  ──▶ prevResult passed through
 *                                      ADD (no prevResult) POST, standalone ──▶ the agent's cniResult
 *                                      DEL     DELETE .../:id/:ifname     ──▶ (nothing; idempotent)
 *                                      CHECK   GET .../:id/:ifname        ──▶ (nothing)
 *                                      GC      POST /v1/cni/gc            ──▶ (nothing)
 *                                      STATUS  GET /v1/status             ──▶ (nothing) | error 50
 *                                      VERSION                            ──▶ {cniVersion, supportedVersions}
 *   any failure ──▶ the spec's error object on stdout, exit 1
 *
 * Fail closed: an ADD the agent cannot serve (down, refusing, too slow) is an
 * error, so the runtime tears the attachment down: no network rather than an
 * unenforced one. A DEL while the agent is down is an error too (11, try
 * again): succeeding would leave the agent enforcing a stale identity on an
 * address the runtime may hand to the next container.
 */
import { DEFAULT_SOCKET, AgentClient } from "../agent/client.js";
import { isMembraneError } from "../errors.js";
import { endpointIdentity, parseEnv, type Invocation } from "./args.js";
import {
  CNI_ERRORS,
  CniError,
  MEMBRANE_CNI_ERRORS,
  parseConf,
  SUPPORTED_VERSIONS,
  type CniErrorObject,
  type CniResult,
  type MembranePluginConf,
} from "./spec.js";

/** What the runtime gets: stdout and the exit status. */
export interface PluginOutput {
  stdout: string;
  status: 0 | 1;
}

/** A request to the agent (AgentClient.request); replaced in tests. */
export type AgentCall = (
  socket: string,
  timeoutMs: number,
  method: string,
  path: string,
  body?: unknown,
) => Promise<unknown>;

const agentCall: AgentCall = (socket, timeoutMs, method, path, body) =>
  new AgentClient({ socketPath: socket, timeoutMs }).request(method, path, body);

/** Largest configuration read from stdin. */
export const MAX_STDIN = 1 << 20;

export async function run(
  env: Readonly<Record<string, string | undefined>>,
  stdin: string,
  call: AgentCall = agentCall,
): Promise<PluginOutput> {
  let version = "1.1.0";
  try {
    const inv = parseEnv(env);
    if (stdin.length > MAX_STDIN)
      throw new CniError(
        CNI_ERRORS.ioFailure,
        "read the network configuration",
        `stdin is larger than ${MAX_STDIN} bytes`,
      );
    if (inv.command === "VERSION") return versionAnswer(stdin);
    const conf = parseConf(stdin);
    version = conf.cniVersion;
    const out = await dispatch(inv, conf, call);
    return { stdout: out === undefined ? "" : JSON.stringify(out), status: 0 };
  } catch (e) {
    return { stdout: JSON.stringify(errorObject(e, version)), status: 1 };
  }
}

function versionAnswer(stdin: string): PluginOutput {
  let v: unknown;
  try {
    v = (JSON.parse(stdin === "" ? "{}" : stdin) as { cniVersion?: unknown }).cniVersion;
  } catch (e) {
    throw new CniError(CNI_ERRORS.decodingFailure, "decode the VERSION request", (e as Error).message);
  }
  const cniVersion = typeof v === "string" && v.length <= 16 ? v : "1.1.0";
  return { stdout: JSON.stringify({ cniVersion, supportedVersions: [...SUPPORTED_VERSIONS] }), status: 0 };
}

/** The spec's error object for any failure (our CniError, the agent's MembraneError, anything else). */
export function errorObject(e: unknown, cniVersion: string): CniErrorObject {
  if (e instanceof CniError) return { cniVersion, code: e.cniCode, msg: e.msg, details: e.details };
  if (isMembraneError(e)) {
    if (e.code === "AGENT_UNREACHABLE")
      return {
        cniVersion,
        code: CNI_ERRORS.tryAgainLater,
        msg: "reach the Membrane agent",
        details: e.message,
      };
    return {
      cniVersion,
      code: MEMBRANE_CNI_ERRORS.agentRefused,
      msg: "the Membrane agent refused",
      details: e.message,
    };
  }
  return {
    cniVersion,
    code: 999,
    msg: "internal error",
    details: e instanceof Error ? e.message : String(e),
  };
}

async function dispatch(inv: Invocation, conf: MembranePluginConf, call: AgentCall): Promise<unknown> {
  const socket = conf.socket ?? DEFAULT_SOCKET;
  const timeout = (conf.timeoutSeconds ?? 30) * 1000;
  const att = `/v1/cni/attachments/${encodeURIComponent(inv.containerId)}/${encodeURIComponent(inv.ifname)}`;
  switch (inv.command) {
    case "ADD": {
      if (!conf.prevResult) return addStandalone(inv, conf, call, socket, timeout);
      const prev = conf.prevResult;
      const id = endpointIdentity(inv, conf);
      const { hostInterfaces, ips } = containerSide(prev, inv);
      await call(socket, timeout, "POST", "/v1/cni/attachments", {
        containerId: inv.containerId,
        ifname: inv.ifname,
        network: conf.name,
        netns: inv.netns,
        ...id,
        hostInterfaces,
        ips,
      });
      return { ...prev, cniVersion: conf.cniVersion };
    }
    case "DEL":
      await call(socket, timeout, "DELETE", att);
      return undefined;
    case "CHECK":
      needPrev(conf, "CHECK");
      await call(socket, timeout, "GET", att);
      return undefined;
    case "GC":
      if (!conf.validAttachments)
        throw new CniError(
          CNI_ERRORS.invalidConfig,
          "collect garbage",
          `"cni.dev/valid-attachments" is missing`,
        );
      await call(socket, timeout, "POST", "/v1/cni/gc", { network: conf.name, valid: conf.validAttachments });
      return undefined;
    case "STATUS":
      try {
        await call(socket, Math.min(timeout, 5000), "GET", "/v1/status");
      } catch (e) {
        throw new CniError(
          CNI_ERRORS.notAvailable,
          "serve ADD requests",
          `the Membrane agent at ${socket} does not answer: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
      return undefined;
    default:
      return undefined;
  }
}

function needPrev(conf: MembranePluginConf, cmd: string): CniResult {
  if (!conf.prevResult)
    throw new CniError(
      CNI_ERRORS.invalidConfig,
      `${cmd} without prevResult`,
      "the runtime passes the ADD's result to CHECK (SPEC.md section 3)",
    );
  return conf.prevResult;
}

/**
 * Standalone ADD (membrane-cni first in the list): the agent makes the veth into CNI_NETNS named
 * CNI_IFNAME, an address from its IPAM and the routes, enforces, and returns the CNI result.
 */
async function addStandalone(
  inv: Invocation,
  conf: MembranePluginConf,
  call: AgentCall,
  socket: string,
  timeout: number,
): Promise<CniResult> {
  const id = endpointIdentity(inv, conf);
  const answer = (await call(socket, timeout, "POST", "/v1/cni/attachments", {
    containerId: inv.containerId,
    ifname: inv.ifname,
    network: conf.name,
    netns: inv.netns,
    ...id,
    hostInterfaces: [],
    ips: [],
    standalone: true,
  })) as { cniResult?: Omit<CniResult, "cniVersion"> } | undefined;
  const r = answer?.cniResult;
  if (!r || !Array.isArray(r.interfaces) || !Array.isArray(r.ips))
    throw new CniError(
      MEMBRANE_CNI_ERRORS.agentRefused,
      "read the Membrane agent's answer",
      "it has no cniResult (an agent older than membrane-cni's standalone mode?)",
    );
  return { cniVersion: conf.cniVersion, interfaces: r.interfaces, ips: r.ips, routes: r.routes ?? [] };
}

/** The container interface's addresses and the result's host-side interfaces. */
function containerSide(prev: CniResult, inv: Invocation): { hostInterfaces: string[]; ips: string[] } {
  const ifs = prev.interfaces ?? [];
  const idx = ifs.findIndex((i) => i.name === inv.ifname && i.sandbox !== undefined && i.sandbox !== "");
  if (idx < 0)
    throw new CniError(
      CNI_ERRORS.invalidConfig,
      "find the container's interface",
      `prevResult has no interface ${JSON.stringify(inv.ifname)} in a sandbox`,
    );
  const ips = (prev.ips ?? [])
    .filter((i) => i.interface === undefined || i.interface === idx)
    .map((i) => i.address.split("/")[0] ?? "");
  return { hostInterfaces: ifs.filter((i) => !i.sandbox).map((i) => i.name), ips };
}
