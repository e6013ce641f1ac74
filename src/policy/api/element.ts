/**
 * One item of ingress / egress / ingressDeny / egressDeny:
 *
 *   peers (peers.ts) AND ports (ports.ts) or icmps (icmp.ts), + authentication
 *     -> RuleElement
 */
import type { AuthMode, RuleElement } from "../types.js";
import type { Val } from "./fields.js";
import { readIcmps } from "./icmp.js";
import { EGRESS_L3, INGRESS_L3, readPeers } from "./peers.js";
import { readPortRules } from "./ports.js";
import type { ElementScope } from "./scope.js";

const AUTH_MODES: readonly AuthMode[] = ["disabled", "required", "test-always-fail"];

function knownFields(s: ElementScope): string[] {
  const l3 = s.dir === "ingress" ? [...INGRESS_L3, "fromRequires"] : [...EGRESS_L3, "toRequires"];
  return [...l3, "toPorts", "icmps", "authentication"];
}

/** Explains a field that belongs to the other direction. */
function otherDirection(s: ElementScope): (key: string) => string | undefined {
  const other = s.dir === "ingress" ? [...EGRESS_L3, "toRequires"] : [...INGRESS_L3, "fromRequires"];
  return (key) => {
    if (!other.includes(key)) return undefined;
    const mine = s.dir === "ingress" ? key.replace(/^to/, "from") : key.replace(/^from/, "to");
    return `: ${key} belongs in ${s.dir === "ingress" ? "egress" : "ingress"} rules; ${s.dir} rules use "${mine}"`;
  };
}

export function readElement(v: Val, s: ElementScope): RuleElement | undefined {
  const m = v.map(knownFields(s), otherDirection(s));
  if (!m) return undefined;
  const before = v.ctx.problems.length;
  if (s.deny) {
    m.get("toFQDNs")?.error(
      "toFQDNs is not allowed in deny rules (Cilium cannot deny by DNS name); use toCIDRSet",
    );
    m.get("authentication")?.error("authentication is not allowed in deny rules");
  }
  const { peers, requires, hasL3 } = readPeers(m, s);
  const portsVal = m.get("toPorts");
  const icmpsVal = m.get("icmps");
  const ports = portsVal && readPortRules(portsVal, s);
  const icmps = icmpsVal && readIcmps(icmpsVal);
  if (m.nonEmpty("toPorts") && m.nonEmpty("icmps")) {
    v.error("icmps and toPorts cannot be combined in one rule; use two rules");
  }
  if (m.nonEmpty("toServices") && m.nonEmpty("toPorts")) {
    v.error(
      "toServices and toPorts cannot be combined in one rule (as in Cilium); use the service's backends' ports in a toEndpoints rule",
    );
  }
  const auth = s.deny ? undefined : readAuth(m.get("authentication"), s);
  if (v.ctx.problems.length > before) return undefined;

  const restricted = (ports?.length ?? 0) > 0 || (icmps?.length ?? 0) > 0;
  return {
    origin: {
      policy: s.policy,
      path: v.rel,
      deny: s.deny,
      ...(s.description !== undefined ? { description: s.description } : {}),
    },
    peers: hasL3 ? peers : restricted ? [{ kind: "all" }] : [],
    requires,
    ...(ports && ports.length > 0 ? { ports } : {}),
    ...(icmps && icmps.length > 0 ? { icmps } : {}),
    ...(auth !== undefined ? { auth } : {}),
  };
}

function readAuth(v: Val | undefined, s: ElementScope): AuthMode | undefined {
  if (v === undefined) return undefined;
  const modeVal = v.map(["mode"])?.need("mode");
  const mode = modeVal?.str();
  if (modeVal === undefined || mode === undefined) return undefined;
  if (!(AUTH_MODES as readonly string[]).includes(mode)) {
    return modeVal.error(`unknown authentication mode "${mode}"; use disabled, required or test-always-fail`);
  }
  if (mode !== "disabled" && !s.meshAuth) {
    return modeVal.unsupported("mutual authentication is not enabled on this node (meshAuth)");
  }
  return mode as AuthMode;
}
