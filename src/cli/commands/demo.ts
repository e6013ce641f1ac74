/** `membrane demo [--nodes N]`: the Star Wars demo on real packets, on one node or several (needs root). */
import { Command, Option } from "commander";
import { runDemo } from "../demo.js";
import { runGatewayDemo } from "../demo-gateway.js";
import { MAX_DEMO_NODES, runClusterDemo, type DemoEncryption } from "../demo-cluster.js";
import type { CliContext } from "../context.js";
import { MembraneError } from "../../errors.js";

function parseNodes(s: string): number {
  if (!/^\d{1,2}$/.test(s) || Number(s) < 1 || Number(s) > MAX_DEMO_NODES) {
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot run the demo on --nodes ${JSON.stringify(s.slice(0, 20))}: give a whole number from 1 to ${MAX_DEMO_NODES}`,
    );
  }
  return Number(s);
}

export function demoCommand(ctx: CliContext): Command {
  return new Command("demo")
    .description(
      "run Cilium's Star Wars demo on this machine: agent, endpoints, policy, real traffic, then clean up (needs root)",
    )
    .option(
      "--nodes <n>",
      `1 (default): one in-process agent, L3/L4, L7 and runtime steps; 2..${MAX_DEMO_NODES}: a real \`membrane agent\` process per node on one etcd, the ships spread over the nodes, the L3/L4 policy applied once and enforced across nodes (needs etcd)`,
      "1",
    )
    .addOption(
      new Option(
        "--encryption <mode>",
        "with --nodes: encrypt pod traffic between nodes, strict mode on (wireguard: needs wireguard-go or the kernel module; ipsec: needs strongSwan's charon-systemd and kernel-libipsec; mtls-tunnel: pod TCP in TLS 1.3 between the nodes' tunnels, each connection under its source's SVID)",
      ).choices(["wireguard", "ipsec", "mtls-tunnel"]),
    )
    .option("--keep", "keep the namespaces afterwards, to look around (one node only)")
    .option(
      "--gateway",
      "instead: a Gateway API demo, outside requests through a Gateway to two weighted backends, with the flows",
    )
    .addHelpText(
      "after",
      `
Everything happens in scratch network namespaces; the machine's own interfaces, routes and
nftables are never touched (with --nodes, etcd listens on 127.0.0.1 only, on a free port).
Ctrl-C cleans up too. Exit code 1 if any attempt did not end as Cilium would have it.

With --nodes N: etcd, an underlay bridge and N node namespaces, each with its own
\`membrane agent --cluster-store\` process; deathstar on n1, tiefighter on n2, xwing on n3
(on n2 with two nodes); rule1 is applied once, through n1, and waited for on every node;
tiefighter -> deathstar is allowed and xwing -> deathstar dropped by n1, whose flows name
the sending node; then why it was dropped.

Examples:
  $ sudo membrane demo
  $ sudo membrane demo --nodes 3
  $ sudo membrane demo --nodes 3 --encryption wireguard
  $ sudo membrane demo --nodes 3 --encryption ipsec
  $ sudo membrane demo --nodes 3 --encryption mtls-tunnel
  $ sudo membrane demo --gateway
`,
    )
    .action(async (o: { keep?: boolean; nodes: string; gateway?: boolean; encryption?: DemoEncryption }) => {
      if (o.gateway) {
        if ((await runGatewayDemo({ out: ctx.out })) > 0) ctx.exitCode = 1;
        return;
      }
      const nodes = parseNodes(o.nodes);
      const keep = o.keep === true;
      if (keep && nodes > 1) {
        throw new MembraneError(
          "CLI_USAGE",
          "Cannot keep the demo of several nodes: --keep works with one node only",
          {
            hint: "its agents and etcd are child processes of the demo; for a cluster to look around in, start agents with --cluster-store (README: Many nodes)",
          },
        );
      }
      if (o.encryption && nodes === 1)
        throw new MembraneError(
          "CLI_USAGE",
          "Cannot encrypt the demo of one node: --encryption needs --nodes 2 or more",
          {
            hint: "encryption protects traffic between nodes: sudo membrane demo --nodes 3 --encryption wireguard",
          },
        );
      const mismatches =
        nodes === 1
          ? await runDemo({ out: ctx.out, keep })
          : await runClusterDemo({
              out: ctx.out,
              nodes,
              ...(o.encryption ? { encryption: o.encryption } : {}),
            });
      if (mismatches > 0) ctx.exitCode = 1;
    });
}
