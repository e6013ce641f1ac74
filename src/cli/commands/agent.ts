/** `membrane agent`: run the node agent in the foreground. */
import { availableParallelism, hostname } from "node:os";
import { Command, Option } from "commander";
import { DEFAULT_SOCKET } from "../../agent/client.js";
import { hubbleListenOf } from "../../agent/hubble.js";
import { runAgent } from "../../agent/run.js";
import { MembraneError } from "../../errors.js";
import { parseMetricsList } from "../../observe/metrics-config.js";
import type { CliContext } from "../context.js";
import { applyAgentConfig } from "../agent-config.js";
import { addLbFlags, lbFromFlags } from "./agent-lb.js";
import { addClusterFlags, clusterFromFlags } from "./agent-cluster.js";
import { addEncryptionFlags, encryptionFromFlags } from "./agent-encryption.js";

export function agentCommand(ctx: CliContext): Command {
  const cmd = new Command("agent")
    .description("run the node agent: endpoints, policies and nftables enforcement on this node (needs root)")
    .option("--config <file>", "read flags from this YAML file (keys are flag names; flags given here win)")
    .option("--state-dir <dir>", "where the agent keeps its durable state", "/var/lib/membrane")
    .option("--socket <path>", "API socket (root only)", DEFAULT_SOCKET)
    .option("--node-netns <name>", "the node's network namespace (default: the agent's own)")
    .option("--netns-prefix <prefix>", "prefix of the endpoint network namespaces", "mbr-")
    .option("--pod-cidr <cidr>", "IPv4 pod CIDR of this node", "10.200.0.0/24")
    .option("--pod-cidr6 <cidr>", "IPv6 pod CIDR of this node (dual stack)")
    .option(
      "--etcd <urls>",
      "share state through etcd (comma-separated client URLs) instead of the embedded store",
    )
    .option(
      "--kubeconfig <file>",
      "also take namespaces, pods, nodes, services, endpoint slices and policies from this Kubernetes API",
    )
    .option("--table <name>", "name of Membrane's nftables table (family inet)", "membrane")
    .option("--log-group <n>", "NFLOG group of drop logs", "1")
    .addOption(
      new Option("--policy-enforcement-mode <mode>", "default | always | never")
        .choices(["default", "always", "never"])
        .default("default"),
    )
    .addOption(
      new Option("--allow-localhost <mode>", "always | policy")
        .choices(["always", "policy"])
        .default("always"),
    )
    .option("--resync <seconds>", "periodic kernel resync (0 = off)", "30")
    .option("--no-flows", "do not read NFLOG events (no flows, no flow metrics)")
    .option(
      "--node-name <name>",
      "this node's name in flows and in Kubernetes (its pods' spec.nodeName)",
      hostname(),
    )
    .option("--flow-buffer <n>", "flows kept in memory for `membrane observe`", "16384")
    .option("--metrics-address <host:port>", "serve Prometheus metrics on /metrics (e.g. 127.0.0.1:9962)")
    .option(
      "--hubble-metrics <list>",
      'Hubble metric handlers and options, as Cilium\'s hubble.metrics.enabled (blank-separated, repeatable), e.g. "dns:query;ignoreAAAA tcp flow:sourceContext=namespace;destinationContext=pod httpV2:labelsContext=source_namespace,destination_namespace"; handlers: flow drop policy port-distribution tcp icmp flows-to-world dns http httpV2 kafka (default: all, no options)',
      (v: string, prev: string | undefined) => (prev === undefined ? v : `${prev} ${v}`),
    )
    .option(
      "--hubble-socket <path>",
      "Hubble's Observer API (gRPC) socket (default: hubble.sock beside --socket)",
    )
    .option(
      "--hubble-listen <host:port>",
      "also serve Hubble's Observer API on TCP, with TLS (needs the two below)",
    )
    .option("--hubble-tls-cert <file>", "certificate (PEM) of --hubble-listen")
    .option("--hubble-tls-key <file>", "private key (PEM) of --hubble-listen")
    .option("--hubble-tls-client-ca <file>", "require client certificates signed by this CA (mutual TLS)")
    .option("--export-file <path>", "also write flows as JSON lines to this file (rotated by size)")
    .option("--export-max-size <MiB>", "rotate the export file at this size", "10")
    .option("--export-max-backups <n>", "rotated export files to keep", "5")
    .option("--runtime-events", "record process exec/exit per endpoint (`membrane runtime events`)")
    .addOption(
      new Option(
        "--runtime-source <source>",
        "process event source: auto (native ring buffer, bpftrace where it cannot load), native, bpftrace",
      )
        .choices(["auto", "native", "bpftrace"])
        .default("auto"),
    )
    .option("--runtime-export-file <path>", "also write runtime events as Tetragon JSON lines to this file")
    .option("--no-proxy", "run no L7 proxy: L7 rules (HTTP, DNS, Kafka, TLS) then drop what they cover")
    .option("--proxy-port <port>", "TCP port of the L7 proxy on the node's gateway addresses", "15001")
    .option(
      "--dns-proxy-port <port>",
      "UDP/TCP port of the DNS proxy on the node's gateway addresses",
      "15053",
    )
    .option(
      "--proxy-workers <n>",
      "L7/DNS proxy processes (auto: one per CPU): worker i listens on --proxy-port + i and --dns-proxy-port + i, and the kernel spreads new connections over the running ones",
      "auto",
    )
    .option(
      "--proxy-gid <gid>",
      "group the proxy runs as; the kernel lets this group's upstream connections out unchecked",
      "1337",
    )
    .option(
      "--proxy-uid <uid>",
      "user the proxy drops root for once its sockets are bound (it parses untrusted bytes)",
      "1337",
    )
    .option(
      "--tls-secrets-dir <dir>",
      "TLS secrets for terminatingTLS/originatingTLS: <dir>/<namespace>/<name>/{tls.crt,tls.key,ca.crt}, readable by the proxy group",
      "/etc/membrane/secrets",
    )
    .option("--tofqdns-min-ttl <seconds>", "shortest life of an address learned from a DNS answer", "3600")
    .option(
      "--gateway",
      "serve Gateway API (GatewayClass controllerName membrane.io/gateway-controller) and Ingress (class membrane) routes from <netns-prefix>-gateway; certificates from --tls-secrets-dir",
    )
    .option(
      "--spiffe",
      "issue X.509-SVIDs to identities, serve the SPIFFE Workload API in every endpoint, and enforce rules with authentication: {mode: required} (membrane auth; needs iptables)",
    )
    .option(
      "--trust-domain <name>",
      "SPIFFE trust domain (IDs spiffe://<name>/identity/<number>)",
      "cluster.local",
    )
    .option("--svid-ttl <seconds>", "life of an X.509-SVID (rotated at half life)", "3600")
    .option(
      "--auth-port <port>",
      "cluster mode with --spiffe: TCP port of cross-node mutual-authentication handshakes at --node-ip (only other nodes' addresses reach it)",
      "4250",
    )
    .addOption(
      new Option(
        "--auth-prefill <scope>",
        "with --spiffe: pairs a rule requiring authentication names are authenticated before their first packet: all (local pairs, and cross-node pairs over the pooled connection to the peer's agent), local (two local endpoints only), none (every pair on its held first packet)",
      )
        .choices(["all", "local", "none"])
        .default("all"),
    )
    .addOption(
      new Option("--log-level <level>", "log level")
        .choices(["debug", "info", "warn", "error"])
        .default("info"),
    )
    .addHelpText(
      "after",
      `
Stopping the agent (Ctrl-C, SIGTERM) leaves enforcement in place; a restarted agent reconciles
without flushing. Logs are JSON lines on standard error.

Examples:
  $ sudo membrane agent
  $ sudo membrane agent --node-netns node1 --state-dir /tmp/m1 --socket /tmp/m1/agent.sock
  $ sudo membrane agent --kubeconfig /etc/kubernetes/kubelet.conf --node-name "$(hostname)"
  $ sudo membrane agent --config packaging/agent.yaml
  $ sudo membrane agent --cluster-store etcd://10.0.0.5:2379 --node-name n1 --node-ip 10.0.0.11 \\
      --cluster-cidr 10.200.0.0/16 --etcd-ca ca.pem --etcd-cert n1.pem --etcd-key n1-key.pem
  $ sudo membrane agent --cluster-store etcd://10.0.0.5:2379 --node-name n1 --node-ip 10.0.0.11 \\
      --cluster-cidr 10.200.0.0/16 --encryption wireguard --encryption-strict
  $ sudo membrane agent --cluster-store etcd://10.0.0.5:2379 --node-name n1 --node-ip 10.0.0.11 \\
      --cluster-cidr 10.200.0.0/16 --encryption mtls-tunnel --encryption-strict
`,
    );
  return addLbFlags(addEncryptionFlags(addClusterFlags(cmd))).action(
    async (_o: Record<string, string | boolean | undefined>, self: Command) => {
      const cfg = self.getOptionValue("config") as string | undefined;
      if (cfg !== undefined) applyAgentConfig(self, cfg);
      const o = self.opts<Record<string, string | boolean | undefined>>();
      const str = (k: string): string | undefined => (typeof o[k] === "string" ? o[k] : undefined);
      const int = (k: string, flag: string, min: number, max: number): number => {
        const n = Number(str(k));
        if (!Number.isInteger(n) || n < min || n > max)
          throw new MembraneError(
            "CLI_USAGE",
            `Cannot start the agent: ${flag} "${str(k)}" is not an integer in ${min}..${max}`,
            {
              hint: `Give ${flag} a whole number between ${min} and ${max}.`,
            },
          );
        return n;
      };
      const hubbleListen = () => {
        const listen = hubbleListenOf(
          str("hubbleListen"),
          str("hubbleTlsCert"),
          str("hubbleTlsKey"),
          str("hubbleTlsClientCa"),
        );
        return listen === undefined ? {} : { listen };
      };
      const encryption = encryptionFromFlags(self);
      const podCidrs = [str("podCidr"), str("podCidr6"), ...(str("clusterCidr") ?? "").split(",")];
      const lb = lbFromFlags(
        self,
        podCidrs.filter((c): c is string => !!c),
      );
      await runAgent({
        ...(encryption ? { encryption } : {}),
        lb,
        stateDir: o["stateDir"] as string,
        socketPath: o["socket"] as string,
        ...(str("nodeNetns") ? { nodeNetns: str("nodeNetns") as string } : {}),
        netnsPrefix: o["netnsPrefix"] as string,
        podCidr4: o["podCidr"] as string,
        ...(str("podCidr6") ? { podCidr6: str("podCidr6") as string } : {}),
        table: o["table"] as string,
        logGroup: Number(o["logGroup"]),
        ...(str("etcd") ? { etcd: (str("etcd") as string).split(",") } : {}),
        ...(str("clusterStore") ? { cluster: clusterFromFlags(self) } : {}),
        ...(str("kubeconfig")
          ? { k8s: { kubeconfig: str("kubeconfig") as string, nodeName: str("nodeName") ?? hostname() } }
          : {}),
        engine: {
          policyEnforcementMode: o["policyEnforcementMode"] as "default" | "always" | "never",
          allowLocalhost: o["allowLocalhost"] as "always" | "policy",
          // --spiffe: rules with authentication: {mode: required} are accepted and enforced (they were
          // refused as unsupported by an agent started from the command line).
          ...(o["spiffe"] === true ? { meshAuth: true } : {}),
        },
        logLevel: o["logLevel"] as string,
        resyncMs: Number(o["resync"]) * 1000,
        ...(o["proxy"] !== false
          ? {
              proxy: {
                gid: int("proxyGid", "--proxy-gid", 1, 0xfffffffe),
                uid: int("proxyUid", "--proxy-uid", 1, 0xfffffffe),
                l7Port: int("proxyPort", "--proxy-port", 1, 65535),
                dnsPort: int("dnsProxyPort", "--dns-proxy-port", 1, 65535),
                workers:
                  str("proxyWorkers") === "auto"
                    ? Math.min(256, availableParallelism())
                    : int("proxyWorkers", "--proxy-workers", 1, 256),
                secretsDir: str("tlsSecretsDir") as string,
                dnsMinTtlSeconds: int("tofqdnsMinTtl", "--tofqdns-min-ttl", 0, 604800),
              },
            }
          : {}),
        ...(o["flows"] !== false
          ? {
              observe: {
                nodeName: str("nodeName") ?? hostname(),
                ringCapacity: Number(str("flowBuffer")),
                ...(str("metricsAddress") ? { metricsAddress: str("metricsAddress") as string } : {}),
                ...(str("hubbleMetrics") !== undefined
                  ? { hubbleMetrics: parseMetricsList([str("hubbleMetrics") as string]) }
                  : {}),
                ...(str("exportFile")
                  ? {
                      export: {
                        path: str("exportFile") as string,
                        maxSizeBytes: Number(str("exportMaxSize")) * 2 ** 20,
                        maxBackups: Number(str("exportMaxBackups")),
                      },
                    }
                  : {}),
              },
            }
          : {}),
        ...(o["flows"] !== false
          ? {
              hubble: {
                version: ctx.version,
                ...(str("hubbleSocket") ? { socketPath: str("hubbleSocket") as string } : {}),
                ...hubbleListen(),
              },
            }
          : {}),
        ...(o["gateway"] === true ? { gateway: { secretsDir: str("tlsSecretsDir") as string } } : {}),
        ...(o["spiffe"] === true
          ? {
              spiffe: {
                trustDomain: str("trustDomain") as string,
                svidTtlMs: int("svidTtl", "--svid-ttl", 60, 86400) * 1000,
                authPort: int("authPort", "--auth-port", 1, 65535),
                prefillLocalPairs: str("authPrefill") !== "none",
                prefillRemotePairs: (str("authPrefill") ?? "all") === "all",
              },
            }
          : {}),
        ...(o["runtimeEvents"] === true
          ? {
              runtime: {
                nodeName: str("nodeName") ?? hostname(),
                source: (str("runtimeSource") ?? "auto") as "auto" | "native" | "bpftrace",
                ...(str("runtimeExportFile") ? { exportPath: str("runtimeExportFile") as string } : {}),
              },
            }
          : {}),
      });
    },
  );
}
