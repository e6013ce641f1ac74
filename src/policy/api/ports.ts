/**
 * `toPorts`: ports, protocols, and what rides on them (L7 rules, SNI, TLS).
 *
 *   {ports: [{port, endPort?, protocol?}], rules?, serverNames?, terminatingTLS?, originatingTLS?}
 *     -> PortRule {ports: PortProtocol[], l7?, serverNames?, terminatingTLS?, originatingTLS?}
 */
import {
  EXTENDED_PROTOCOLS,
  isExtendedProtocol,
  type L7Rules,
  type PortProtocol,
  type PortRule,
  type Protocol,
} from "../types.js";
import type { Val } from "./fields.js";
import { readL7Rules } from "./l7.js";
import { checkFqdn, checkPortName } from "./names.js";
import { type ElementScope, notSupported } from "./scope.js";
import { readTls } from "./tls.js";

export const MAX_PORTS = 40;
const PORT_RULE_FIELDS = ["ports", "rules", "serverNames", "terminatingTLS", "originatingTLS", "listener"];
const CNP_PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP", "ANY", ...EXTENDED_PROTOCOLS];

/** Every port of every protocol: a PortRule written without ports. */
export const ALL_PORTS: PortProtocol = { protocol: "ANY", port: 0, endPort: 0 };

export function readPortRules(v: Val, s: ElementScope): PortRule[] | undefined {
  const items = v.list();
  if (!items) return undefined;
  const out: PortRule[] = [];
  let ok = true;
  for (const item of items) {
    const r = readPortRule(item, s);
    if (r) out.push(r);
    else ok = false;
  }
  return ok ? out : undefined;
}

function readPortRule(v: Val, s: ElementScope): PortRule | undefined {
  const m = v.map(PORT_RULE_FIELDS);
  if (!m) return undefined;
  const before = v.ctx.problems.length;
  if (s.deny) {
    for (const f of ["rules", "serverNames", "terminatingTLS", "originatingTLS", "listener"]) {
      m.get(f)?.error(
        `${f} is not allowed in deny rules: denied traffic is dropped at L3/L4, never inspected`,
      );
    }
  } else {
    m.get("listener")?.unsupported(notSupported("listener (CiliumEnvoyConfig redirect)"));
  }

  const portsVal = m.get("ports");
  const portItems = portsVal?.list() ?? [];
  if (portItems.length > MAX_PORTS)
    portsVal?.error(`at most ${MAX_PORTS} ports per toPorts entry, got ${portItems.length}`);
  const ports: PortProtocol[] = [];
  for (const p of portItems) {
    const pp = readPortProtocol(p);
    if (pp) ports.push(pp);
  }

  const rulesVal = s.deny ? undefined : m.get("rules");
  const l7 = rulesVal && readL7Rules(rulesVal, s);
  const snVal = s.deny ? undefined : m.get("serverNames");
  const serverNames = snVal && readServerNames(snVal);
  const terminatingTLS = s.deny ? undefined : m.get("terminatingTLS");
  const originatingTLS = s.deny ? undefined : m.get("originatingTLS");
  const term = terminatingTLS && readTls(terminatingTLS);
  const orig = originatingTLS && readTls(originatingTLS);

  const needsPorts = l7 !== undefined || snVal !== undefined || terminatingTLS || originatingTLS;
  if (needsPorts && portItems.length === 0) {
    m.self.error('L7 rules, serverNames and TLS settings need at least one port in "ports"');
  }
  if (l7 && ports.length === portItems.length) checkL7Ports(l7, ports, portItems, rulesVal as Val, s);
  if (snVal && l7 && !terminatingTLS) {
    snVal.error(
      "serverNames together with L7 rules needs terminatingTLS (the proxy must decrypt to see requests)",
    );
  }
  if (v.ctx.problems.length > before) return undefined;
  return {
    ports: portItems.length === 0 ? [ALL_PORTS] : ports,
    ...(l7 ? { l7 } : {}),
    ...(serverNames ? { serverNames } : {}),
    ...(term ? { terminatingTLS: term } : {}),
    ...(orig ? { originatingTLS: orig } : {}),
  } satisfies PortRule;
}

function checkL7Ports(l7: L7Rules, ports: PortProtocol[], items: Val[], rules: Val, s: ElementScope): void {
  if (s.hostPolicy && l7.kind !== "dns") {
    rules.error("host policies (nodeSelector) support no L7 rules except DNS");
  }
  ports.forEach((p, i) => {
    const at = items[i] ?? rules;
    const protoOk =
      p.protocol === "TCP" || (l7.kind === "dns" && (p.protocol === "UDP" || p.protocol === "ANY"));
    if (!protoOk) {
      at.error(
        l7.kind === "dns"
          ? `DNS rules apply to protocol TCP, UDP or ANY, not ${p.protocol}`
          : `${l7.kind} rules need protocol: TCP (got ${p.protocol}); only DNS rules may use UDP or ANY`,
      );
    }
    // HTTP, Kafka (and serverNames/TLS) on an endPort range are valid since
    // Cilium 1.17: the whole range is redirected. DNS rules still refuse one.
    if (p.name === undefined && p.port === 0)
      at.error(`${l7.kind} rules cannot apply to port 0 (all ports); name the port`);
    else if (l7.kind === "dns" && p.endPort !== p.port)
      at.error("DNS rules cannot apply to a port range (endPort); give one port (53)");
  });
}

/** One `{port, endPort, protocol}` of a CNP toPorts entry. */
function readPortProtocol(v: Val): PortProtocol | undefined {
  const m = v.map(["port", "endPort", "protocol"]);
  if (!m) return undefined;
  const before = v.ctx.problems.length;
  const protoVal = m.get("protocol");
  let protocol: Protocol = "ANY";
  if (protoVal) {
    const text = protoVal.str();
    const up = text?.toUpperCase();
    if (up !== undefined && (CNP_PROTOCOLS as readonly string[]).includes(up)) protocol = up as Protocol;
    else if (up === "ICMP" || up === "ICMPV6")
      protoVal.error(`protocol ${text} goes in "icmps", not in toPorts`);
    else if (text !== undefined)
      protoVal.error(
        `unknown protocol "${text}"; use TCP, UDP, SCTP, ANY or one of ${EXTENDED_PROTOCOLS.join(", ")}`,
      );
  }
  if (isExtendedProtocol(protocol)) {
    // No transport ports: Cilium requires the port to be empty or 0.
    const pv = m.get("port");
    const raw = pv?.strOrNum();
    if (pv && raw !== undefined && String(raw).trim() !== "0")
      pv.error(`protocol ${protocol} has no ports: leave "port" out (or 0)`);
    m.get("endPort")?.error(`protocol ${protocol} has no ports: endPort does not apply`);
    if (v.ctx.problems.length > before) return undefined;
    return { protocol, port: 0, endPort: 0 };
  }
  const port = readPortValue(m.get("port"), false);
  const endVal = m.get("endPort");
  let endPort = port?.port ?? 0;
  if (endVal && port) {
    const e = endVal.int(0, 65535);
    if (e === undefined) {
      // reported
    } else if (port.name !== undefined) {
      endVal.error("endPort cannot be used with a named port");
    } else if (port.port === 0) {
      endPort = e;
      if (e !== 0) endVal.error("endPort cannot be used with port 0 (which already means all ports)");
    } else if (e < port.port) {
      endVal.error(`endPort ${e} is below port ${port.port}`);
    } else {
      endPort = e;
    }
  }
  if (!port || v.ctx.problems.length > before) return undefined;
  return port.name !== undefined
    ? { protocol, port: 0, endPort: 0, name: port.name }
    : { protocol, port: port.port, endPort };
}

/**
 * A port number or name. Absent means 0 (all ports). `knp` forbids 0
 * (Kubernetes ports are 1-65535; omit the port for "all").
 */
export function readPortValue(v: Val | undefined, knp: boolean): { port: number; name?: string } | undefined {
  if (v === undefined) return { port: 0 };
  const raw = v.strOrNum();
  if (raw === undefined) return undefined;
  const text = typeof raw === "number" ? String(raw) : raw.trim();
  if (/^-?\d+$/.test(text)) {
    const n = Number(text);
    const min = knp ? 1 : 0;
    if (n < min || n > 65535) {
      return v.error(
        knp
          ? `port ${text} is out of range 1-65535 (omit the port to allow all ports)`
          : `port ${text} is out of range 0-65535 (0 means all ports)`,
      );
    }
    return { port: n };
  }
  if (typeof raw === "number") return v.error(`port ${text} is not an integer`);
  const name = text.toLowerCase();
  const bad = checkPortName(name);
  if (bad) return v.error(bad);
  return { port: 0, name };
}

function readServerNames(v: Val): string[] | undefined {
  const items = v.list();
  if (!items) return undefined;
  const out: string[] = [];
  for (const item of items) {
    const s = item.str();
    if (s === undefined) continue;
    const bad = s === "" ? "an empty server name is not allowed" : checkFqdn(s, true);
    if (bad) item.error(bad);
    else out.push(s.toLowerCase().replace(/\.$/, ""));
  }
  return out.length === items.length ? out : undefined;
}
