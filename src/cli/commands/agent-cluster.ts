/** Cluster-mode flags of `membrane agent` (issue 11; parsed by src/cluster/options.ts). */
import { Option, type Command } from "commander";
import { parseClusterFlags } from "../../cluster/options.js";
import type { ClusterOptions } from "../../cluster/session.js";

export function addClusterFlags(cmd: Command): Command {
  return cmd
    .option(
      "--cluster-store <urls>",
      "cluster mode: share identities, endpoints and policies with other nodes through etcd (etcd://HOST:PORT[,...], https:// for TLS)",
    )
    .option(
      "--node-ip <ips>",
      "cluster mode: this node's underlay address(es), IPv4 and/or IPv6, comma-separated",
    )
    .option("--node-labels <k=v,...>", "cluster mode: this node's labels (nodeSelector, fromNodes/toNodes)")
    .option("--etcd-ca <file>", "CA certificate (PEM) of the cluster store's TLS certificate")
    .option("--etcd-cert <file>", "this node's client certificate (PEM) for the cluster store")
    .option("--etcd-key <file>", "this node's client key (PEM) for the cluster store")
    .option("--etcd-username <user>", "cluster store user (password authentication)")
    .option("--etcd-password-file <file>", "file holding the cluster store user's password")
    .option(
      "--cluster-cidr <cidrs>",
      "cluster mode: allocate this node's pod CIDR(s) from these (IPv4[,IPv6]) unless --pod-cidr is given",
    )
    .option("--cluster-cidr-mask-size <bits>", "prefix length of a node's IPv4 block of --cluster-cidr", "24")
    .option(
      "--cluster-cidr-mask-size6 <bits>",
      "prefix length of a node's IPv6 block of --cluster-cidr",
      "112",
    )
    .option("--cluster-lease-ttl <seconds>", "lease of this node's keys in the cluster store", "15")
    .addOption(
      new Option("--tunnel <mode>", "how pods reach pods on other nodes: native routing or a VXLAN overlay")
        .choices(["native", "vxlan"])
        .default("native"),
    );
}

/** ClusterOptions from the parsed command (flags and config file); errors name the flag. */
export function clusterFromFlags(cmd: Command): ClusterOptions {
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  const s = (k: string): string | undefined => (typeof o[k] === "string" ? o[k] : undefined);
  // --pod-cidr has a single-node default: it counts here only when given (flag or config file).
  const given = (k: string): string | undefined =>
    cmd.getOptionValueSource(k) === "default" ? undefined : s(k);
  const pick = (k: string): Record<string, string> => (s(k) !== undefined ? { [k]: s(k) as string } : {});
  return parseClusterFlags({
    clusterStore: s("clusterStore") ?? "",
    nodeName: s("nodeName") ?? "",
    ...pick("nodeIp"),
    ...pick("nodeLabels"),
    ...pick("etcdCa"),
    ...pick("etcdCert"),
    ...pick("etcdKey"),
    ...pick("etcdUsername"),
    ...pick("etcdPasswordFile"),
    ...pick("clusterCidr"),
    ...pick("clusterCidrMaskSize"),
    ...pick("clusterCidrMaskSize6"),
    ...pick("clusterLeaseTtl"),
    ...pick("tunnel"),
    ...(given("podCidr") !== undefined ? { podCidr: given("podCidr") as string } : {}),
    ...(given("podCidr6") !== undefined ? { podCidr6: given("podCidr6") as string } : {}),
  });
}
