/**
 * Cluster-mode agent flags -> ClusterOptions, with errors naming the flag.
 *
 *   --cluster-store etcd://H:P[,H:P...] | http(s)://H:P[,...]   (etcd:// is https when --etcd-ca is given)
 *   --node-name N  --node-ip IP[,IP6]  --node-labels k=v,...  --etcd-ca/--etcd-cert/--etcd-key
 *   --etcd-username U --etcd-password-file F
 *   --cluster-cidr CIDR[,CIDR6]  --cluster-cidr-mask-size 24  --cluster-cidr-mask-size6 112
 *   --cluster-lease-ttl 15  --tunnel native|vxlan
 */
import { readFileSync } from "node:fs";
import { MembraneError } from "../errors.js";
import { parseAddr } from "../labels/cidr.js";
import { validateNodeName } from "./keys.js";
import { validatePodCidrConfig } from "./podcidr.js";
import type { ClusterOptions } from "./session.js";

export interface ClusterFlags {
  readonly clusterStore: string;
  readonly nodeName: string;
  readonly nodeIp?: string;
  readonly nodeLabels?: string;
  readonly etcdCa?: string;
  readonly etcdCert?: string;
  readonly etcdKey?: string;
  readonly etcdUsername?: string;
  readonly etcdPasswordFile?: string;
  readonly clusterCidr?: string;
  readonly clusterCidrMaskSize?: string;
  readonly clusterCidrMaskSize6?: string;
  readonly clusterLeaseTtl?: string;
  readonly tunnel?: string;
  /** --pod-cidr / --pod-cidr6, only when given explicitly (not the single-node default). */
  readonly podCidr?: string;
  readonly podCidr6?: string;
}

const bad = (flag: string, value: string, why: string, hint?: string): MembraneError =>
  new MembraneError("CLUSTER_INVALID", `Cannot start the agent: ${flag} ${JSON.stringify(value)} ${why}`, {
    ...(hint ? { hint } : {}),
  });

/** etcd://host:port -> http(s)://host:port; http(s):// kept. */
export function parseClusterStore(value: string, tls: boolean): string[] {
  const out: string[] = [];
  for (const raw of value.split(",").map((s) => s.trim())) {
    const m = /^(etcd|http|https):\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(raw);
    const port = Number(m?.[3]);
    if (!m || port < 1 || port > 65535) {
      throw bad(
        "--cluster-store",
        raw,
        "is not an etcd endpoint",
        "give comma-separated etcd://HOST:PORT (or http(s)://HOST:PORT) client URLs, e.g. etcd://10.0.0.5:2379",
      );
    }
    const scheme = m[1] === "etcd" ? (tls ? "https" : "http") : m[1];
    if (scheme === "https" && !tls)
      throw bad(
        "--cluster-store",
        raw,
        "is https but --etcd-ca is not given",
        "give the CA of etcd's certificate with --etcd-ca",
      );
    out.push(`${scheme}://${m[2]}:${port}`);
  }
  return out;
}

function parseNodeIp(value: string | undefined): { ipv4?: string; ipv6?: string } {
  if (value === undefined || value === "")
    throw new MembraneError("CLUSTER_INVALID", "Cannot start the agent: cluster mode needs --node-ip", {
      hint: "give this node's underlay address (IPv4 and/or IPv6, comma-separated), the one peers reach it on",
    });
  const out: { ipv4?: string; ipv6?: string } = {};
  for (const s of value.split(",").map((x) => x.trim())) {
    const a = parseAddr(s);
    if (!a) throw bad("--node-ip", s, "is not an IP address");
    const k = a.family === 4 ? "ipv4" : "ipv6";
    if (out[k] !== undefined) throw bad("--node-ip", value, `has two IPv${a.family} addresses`);
    out[k] = s;
  }
  return out;
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export function parseNodeLabels(value: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (value === undefined || value.trim() === "") return out;
  for (const pair of value.split(",")) {
    const eq = pair.indexOf("=");
    const k = eq < 0 ? pair.trim() : pair.slice(0, eq).trim();
    const v = eq < 0 ? "" : pair.slice(eq + 1).trim();
    if (eq < 0 || !LABEL_KEY.test(k) || !LABEL_VALUE.test(v))
      throw bad(
        "--node-labels",
        pair,
        "is not a label key=value",
        "give comma-separated key=value labels, e.g. zone=a,rack=r1",
      );
    if (k in out) throw bad("--node-labels", pair, `repeats the key ${k}`);
    out[k] = v;
  }
  return out;
}

function int(flag: string, value: string | undefined, def: number, min: number, max: number): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw bad(flag, value, `is not an integer in ${min}..${max}`);
  return n;
}

export function parseClusterFlags(f: ClusterFlags): ClusterOptions {
  const tls = f.etcdCa !== undefined;
  if (!tls && (f.etcdCert !== undefined || f.etcdKey !== undefined))
    throw new MembraneError(
      "CLUSTER_INVALID",
      "Cannot start the agent: --etcd-cert/--etcd-key need --etcd-ca",
    );
  if ((f.etcdCert === undefined) !== (f.etcdKey === undefined))
    throw new MembraneError(
      "CLUSTER_INVALID",
      "Cannot start the agent: give --etcd-cert and --etcd-key together",
    );
  if ((f.etcdUsername === undefined) !== (f.etcdPasswordFile === undefined))
    throw new MembraneError(
      "CLUSTER_INVALID",
      "Cannot start the agent: give --etcd-username and --etcd-password-file together",
    );
  const endpoints = parseClusterStore(f.clusterStore, tls);
  const node = validateNodeName(f.nodeName, "--node-name");
  const nodeIp = parseNodeIp(f.nodeIp);
  const tunnel = f.tunnel ?? "native";
  if (tunnel !== "native" && tunnel !== "vxlan") throw bad("--tunnel", tunnel, "is not native or vxlan");
  const cc: { ipv4?: string; ipv6?: string } = {};
  for (const c of (f.clusterCidr ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")) {
    const k = c.includes(":") ? "ipv6" : "ipv4";
    if (cc[k] !== undefined)
      throw bad("--cluster-cidr", f.clusterCidr ?? "", `has two IPv${k === "ipv4" ? 4 : 6} CIDRs`);
    cc[k] = c;
  }
  const configured = {
    ...(f.podCidr !== undefined ? { ipv4: f.podCidr } : {}),
    ...(f.podCidr6 !== undefined ? { ipv6: f.podCidr6 } : {}),
  };
  const podCidrs = {
    ...(Object.keys(configured).length > 0 ? { configured } : {}),
    ...(Object.keys(cc).length > 0 ? { clusterCidr: cc } : {}),
    maskSize4: int("--cluster-cidr-mask-size", f.clusterCidrMaskSize, 24, 1, 30),
    maskSize6: int("--cluster-cidr-mask-size6", f.clusterCidrMaskSize6, 112, 1, 126),
  };
  if (!podCidrs.configured && !podCidrs.clusterCidr)
    throw new MembraneError(
      "CLUSTER_INVALID",
      "Cannot start the agent: cluster mode needs --cluster-cidr or --pod-cidr",
      {
        hint: "give --cluster-cidr (e.g. 10.200.0.0/16) so that each node gets a block, or this node's --pod-cidr",
      },
    );
  if (configured.ipv4 === undefined && cc.ipv4 === undefined)
    throw new MembraneError(
      "CLUSTER_INVALID",
      "Cannot start the agent: cluster mode needs an IPv4 --cluster-cidr or --pod-cidr",
      {
        hint: "endpoints always get an IPv4 address; IPv6 is added with an IPv6 --cluster-cidr or --pod-cidr6",
      },
    );
  validatePodCidrConfig(podCidrs);
  let auth: { username: string; password: string } | undefined;
  if (f.etcdUsername !== undefined && f.etcdPasswordFile !== undefined) {
    let password: string;
    try {
      password = readFileSync(f.etcdPasswordFile, "utf8").trim();
    } catch (e) {
      throw bad("--etcd-password-file", f.etcdPasswordFile, `cannot be read: ${(e as Error).message}`);
    }
    auth = { username: f.etcdUsername, password };
  }
  return {
    endpoints,
    node,
    nodeIp,
    labels: parseNodeLabels(f.nodeLabels),
    ...(tls
      ? {
          tls: {
            caFile: f.etcdCa as string,
            ...(f.etcdCert !== undefined ? { certFile: f.etcdCert } : {}),
            ...(f.etcdKey !== undefined ? { keyFile: f.etcdKey } : {}),
          },
        }
      : {}),
    ...(auth ? { auth } : {}),
    podCidrs,
    leaseTtlSeconds: int("--cluster-lease-ttl", f.clusterLeaseTtl, 15, 2, 3600),
    tunnel,
  };
}
