/**
 * The CNI contract membrane-cni speaks (spec 1.0.0 and 1.1.0; vendored in
 * test/cni/upstream/ with the Go types the tests check these shapes against).
 *
 *   runtime ──env CNI_* + stdin config──▶ membrane-cni ──stdout: result | error object, exit 0 | 1
 *
 * Pure: types, the error object and the checks of what a runtime sends.
 */
import { MembraneError } from "../errors.js";

/** The spec versions this plugin implements (VERSION answers them). */
export const SUPPORTED_VERSIONS = ["1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

/** The well-known error codes of SPEC.md, section 5 "Error" (and pkg/types/types.go). */
export const CNI_ERRORS = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodingFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  limitedConnectivity: 51,
} as const;

/** Plugin-specific codes (100+ are free for plugins, SPEC.md): the agent refused the request. */
export const MEMBRANE_CNI_ERRORS = { agentRefused: 100 } as const;

/** An error a runtime receives as the spec's error object; `msg` short, `details` longer. */
export class CniError extends MembraneError {
  constructor(
    readonly cniCode: number,
    readonly msg: string,
    readonly details: string,
  ) {
    super("CNI_REQUEST_INVALID", `Cannot ${msg}: ${details}`);
  }
}

/** The error object of SPEC.md section 5 (Go: types.Error). */
export interface CniErrorObject {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

/** The ADD success result (Go: types100.Result). */
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

/** membrane-cni's own keys in a plugin configuration (examples/cni/membrane.conflist). */
export interface MembranePluginConf {
  cniVersion: CniVersion;
  name: string;
  /** The agent's API socket (default /run/membrane/agent.sock). */
  socket?: string;
  /** The endpoint namespace when the runtime passes no K8S_POD_NAMESPACE (default "default"). */
  namespace?: string;
  /** Labels every endpoint of this network gets. */
  labels?: Record<string, string>;
  /** How long ADD waits for the agent to enforce (default 30 s). */
  timeoutSeconds?: number;
  prevResult?: CniResult;
  runtimeConfig?: Record<string, unknown>;
  validAttachments?: { containerID: string; ifname: string }[];
}

/**
 * Keys a runtime may put in the configuration it sends (SPEC.md sections 1 and 3, libcni):
 * anything else is error 2, naming the key.
 */
const SPEC_KEYS = new Set([
  "cniVersion",
  "name",
  "type",
  "capabilities",
  "ipam",
  "dns",
  "args",
  "runtimeConfig",
  "prevResult",
  "cni.dev/valid-attachments",
  "disableCheck",
  "disableGC",
]);
const OWN_KEYS = new Set(["socket", "namespace", "labels", "timeoutSeconds"]);

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Bounded quoting of a runtime's value in an error. */
export const quote = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
};

/** The cniVersion of a configuration, checked (error 1 when not one we implement). */
export function checkVersion(v: unknown, what: string): CniVersion {
  if (typeof v !== "string")
    throw new CniError(
      CNI_ERRORS.invalidConfig,
      `read the ${what}`,
      `"cniVersion" is missing or not a string`,
    );
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    throw new CniError(
      CNI_ERRORS.incompatibleVersion,
      "use this CNI version",
      `cniVersion ${quote(v)} is not supported; membrane-cni implements ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  return v as CniVersion;
}

/** Parses stdin into a configuration: error 6 when not JSON, 7 when invalid, 2 for an unknown key. */
export function parseConf(text: string): MembranePluginConf {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CniError(CNI_ERRORS.decodingFailure, "decode the network configuration", (e as Error).message);
  }
  if (!isObject(raw))
    throw new CniError(
      CNI_ERRORS.decodingFailure,
      "decode the network configuration",
      "it is not a JSON object",
    );
  const cniVersion = checkVersion(raw["cniVersion"], "network configuration");
  for (const k of Object.keys(raw)) {
    if (!SPEC_KEYS.has(k) && !OWN_KEYS.has(k))
      throw new CniError(
        CNI_ERRORS.unsupportedField,
        "read the network configuration",
        `unsupported field ${quote(k)} = ${quote(raw[k])}`,
      );
  }
  const bad = (field: string, why: string): CniError =>
    new CniError(CNI_ERRORS.invalidConfig, "read the network configuration", `field "${field}" ${why}`);
  const name = raw["name"];
  if (typeof name !== "string" || name === "") throw bad("name", "must be a non-empty string");
  const conf: MembranePluginConf = { cniVersion, name };
  const socket = raw["socket"];
  if (socket !== undefined) {
    if (typeof socket !== "string" || !socket.startsWith("/") || socket.length > 107)
      throw bad("socket", "must be an absolute path to the agent's socket (at most 107 bytes)");
    conf.socket = socket;
  }
  const ns = raw["namespace"];
  if (ns !== undefined) {
    if (typeof ns !== "string" || !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns))
      throw bad("namespace", "must be a namespace name (1-63 of [a-z0-9-])");
    conf.namespace = ns;
  }
  const labels = raw["labels"];
  if (labels !== undefined) {
    if (!isObject(labels) || Object.values(labels).some((v) => typeof v !== "string"))
      throw bad("labels", "must map label keys to string values");
    conf.labels = labels as Record<string, string>;
  }
  const t = raw["timeoutSeconds"];
  if (t !== undefined) {
    if (typeof t !== "number" || !Number.isInteger(t) || t < 1 || t > 300)
      throw bad("timeoutSeconds", "must be an integer in 1-300");
    conf.timeoutSeconds = t;
  }
  const rc = raw["runtimeConfig"];
  if (rc !== undefined) {
    if (!isObject(rc)) throw bad("runtimeConfig", "must be an object");
    conf.runtimeConfig = rc;
  }
  if (raw["prevResult"] !== undefined) conf.prevResult = parseResult(raw["prevResult"]);
  const va = raw["cni.dev/valid-attachments"];
  if (va !== undefined) {
    if (
      !Array.isArray(va) ||
      va.some((a) => !isObject(a) || typeof a["containerID"] !== "string" || typeof a["ifname"] !== "string")
    )
      throw bad("cni.dev/valid-attachments", "must be a list of {containerID, ifname} strings");
    conf.validAttachments = (va as { containerID: string; ifname: string }[]).map((a) => ({
      containerID: a.containerID,
      ifname: a.ifname,
    }));
  }
  return conf;
}

/** A prevResult, checked enough to be used (interfaces, ips): error 7 naming the field otherwise. */
export function parseResult(v: unknown): CniResult {
  const bad = (field: string, why: string): CniError =>
    new CniError(
      CNI_ERRORS.invalidConfig,
      "read the network configuration",
      `field "prevResult.${field}" ${why}`,
    );
  if (!isObject(v)) throw bad("", "must be an object");
  const interfaces = v["interfaces"] ?? [];
  if (!Array.isArray(interfaces)) throw bad("interfaces", "must be a list");
  interfaces.forEach((i, n) => {
    if (!isObject(i) || typeof i["name"] !== "string") throw bad(`interfaces[${n}].name`, "must be a string");
    if (i["sandbox"] !== undefined && typeof i["sandbox"] !== "string")
      throw bad(`interfaces[${n}].sandbox`, "must be a string");
  });
  const ips = v["ips"] ?? [];
  if (!Array.isArray(ips)) throw bad("ips", "must be a list");
  ips.forEach((i, n) => {
    if (!isObject(i) || typeof i["address"] !== "string" || !/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(i["address"]))
      throw bad(`ips[${n}].address`, "must be an address in CIDR notation");
    const idx = i["interface"];
    if (
      idx !== undefined &&
      (typeof idx !== "number" || !Number.isInteger(idx) || idx < 0 || idx >= interfaces.length)
    )
      throw bad(`ips[${n}].interface`, "must index the interfaces list");
  });
  return v as unknown as CniResult;
}
