/** `membrane apply -f` and `membrane delete -f`: policies through the agent. */
import { Command } from "commander";
import { MembraneError } from "../../errors.js";
import type { ApplyReport } from "../../agent/agent.js";
import { parsePolicies, warningText } from "../../policy/api/index.js";
import type { PolicyResource } from "../../policy/types.js";
import { applyTracing } from "./apply-tracing.js";
import { fileFamily } from "./file-family.js";
import { impactOptions, showImpact, type ImpactFlags } from "./apply-impact.js";
import { applyGateway } from "./gateway-cli.js";
import { applyLb } from "./apply-lb.js";
import { givenLbFlag, type LbAllocFlags } from "./apply-lb-cluster.js";
import type { CliContext } from "../context.js";
import { client, outputOption, readInput, show, socketOption, type ViewFormat } from "../agent-client.js";
import {
  applyToCluster,
  openClusterStore,
  readRealized,
  waitAndShow,
  type ClusterStoreOptions,
} from "./apply-cluster.js";
import type { NodeRealized } from "../../cluster/realized.js";

const KIND_SHORT: Record<string, string> = {
  CiliumNetworkPolicy: "cnp",
  CiliumClusterwideNetworkPolicy: "ccnp",
  NetworkPolicy: "netpol",
};

function report(ctx: CliContext, format: ViewFormat, r: ApplyReport): void {
  show(ctx, format, r, () =>
    r.policies.map((p) => [
      `${KIND_SHORT[p.kind] ?? p.kind}/${p.namespace ? p.namespace + "/" : ""}${p.name}`,
      p.status,
    ]),
  );
  if (format !== "table") return;
  if (r.policies.every((p) => p.status === "unchanged")) {
    ctx.out(`nothing changed (revision ${r.revision})\n`);
    return;
  }
  ctx.out(
    `enforced in ${r.enforcedMs} ms (revision ${r.revision}, ${r.endpointsChanged} endpoints recomputed, ${r.kernelOps} kernel changes)\n`,
  );
}

interface ClusterFlags extends ClusterStoreOptions, LbAllocFlags {
  wait?: boolean;
  timeout: string;
}

/** Cluster mode: `--cluster-store` (straight to etcd, no agent), `--wait`, `--timeout`. */
function clusterOptions(c: Command): Command {
  return c
    .option(
      "--cluster-store <url>",
      "write straight to the cluster's etcd (etcd://HOST:PORT[,...]), no agent",
    )
    .option("--etcd-ca <file>", "with --cluster-store: CA of etcd's certificate (uses https)")
    .option("--etcd-cert <file>", "with --cluster-store: client certificate")
    .option("--etcd-key <file>", "with --cluster-store: client key")
    .option("--etcd-username <user>", "with --cluster-store: etcd user (e.g. membrane-admin)")
    .option("--etcd-password-file <file>", "with --cluster-store: file holding that user's password")
    .option(
      "--service-cidr <cidrs>",
      "with --cluster-store, for Services: ClusterIPs from here (default: the ranges the live agents publish)",
    )
    .option(
      "--lb-pool <cidrs>",
      "with --cluster-store, for Services: LoadBalancer addresses from here (default: as the agents' --lb-pool)",
    )
    .option(
      "--node-port-range <first-last>",
      "with --cluster-store, for Services: NodePorts from here (default: as the agents' --node-port-range)",
    )
    .option("--wait", "cluster mode: return once every live node has enforced the change")
    .option("--timeout <duration>", "with --wait: how long to wait (e.g. 30s, 2m)", "30s");
}

/** The Services' ranges with another file are refused, not ignored. */
function servicesOnly(o: LbAllocFlags, family: ReturnType<typeof fileFamily>): void {
  const given = givenLbFlag(o);
  if (given !== undefined && family !== "lb")
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot use ${given} with this file: it gives the ranges of Services (v1 Service and EndpointSlice files)`,
    );
}

/** Sends the policies to the cluster's etcd or to the agent; with --wait, waits for every node. */
async function send(
  ctx: CliContext,
  o: ClusterFlags & { socket: string; output: ViewFormat },
  method: "POST" | "DELETE",
  text: string,
  name: string,
  resources: () => PolicyResource[],
): Promise<void> {
  if (o.clusterStore !== undefined) {
    const kv = openClusterStore(o);
    try {
      const r = await applyToCluster(kv, resources(), method === "POST" ? "apply" : "delete");
      report(ctx, o.output, r);
      if (o.wait) await waitAndShow(ctx, o.output, () => readRealized(kv), r.clusterRevision, o.timeout);
    } finally {
      await kv.close();
    }
    return;
  }
  const c = client(o);
  const r = (await c.request(method, "/v1/policies", { text, file: name })) as ApplyReport;
  report(ctx, o.output, r);
  const nodes = async (): Promise<NodeRealized[]> =>
    ((await c.request("GET", "/v1/cluster/realized")) as { nodes: NodeRealized[] }).nodes;
  if (o.wait) await waitAndShow(ctx, o.output, nodes, r.clusterRevision, o.timeout);
}

export function applyCommand(ctx: CliContext): Command {
  const cmd = new Command("apply")
    .description(
      "apply CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy / NetworkPolicy, TracingPolicy / TracingPolicyNamespaced, v1 Service / discovery.k8s.io/v1 EndpointSlice, or Gateway API (GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant) / Ingress YAML (rejected whole if any document is invalid)",
    )
    .requiredOption("-f, --filename <file>", "policy file, or - for standard input")
    .option("--dry-run", "only validate, locally; change nothing")
    .addOption(socketOption())
    .addOption(outputOption());
  for (const opt of impactOptions()) cmd.addOption(opt);
  cmd.addHelpText(
    "after",
    "\nExamples:\n  $ membrane apply -f examples/policies/sw-l3-l4.yaml\n  $ membrane apply --dry-run --impact -f examples/policies/sw-l3-l4.yaml --since 1h   # what would it break?\n  $ cat examples/policies/sw-l7.yaml | membrane apply -f -\n  $ membrane apply -f examples/policies/sw-l3-l4.yaml --wait --timeout 30s\n  $ membrane apply -f examples/policies/sw-l3-l4.yaml --cluster-store etcd://10.0.0.5:2379 --wait\n  $ membrane apply -f examples/services/clusterip.yaml\n  $ membrane apply -f examples/services/loadbalancer.yaml --cluster-store etcd://10.0.0.5:2379 --etcd-username membrane-admin --etcd-password-file membrane-admin.password\n",
  );
  return clusterOptions(cmd).action(
    async (o: ClusterFlags & ImpactFlags & { filename: string; dryRun?: boolean }) => {
      const { text, name } = readInput(o.filename);
      const family = fileFamily(text, name);
      servicesOnly(o, family);
      if (family === "tracing") return applyTracing(ctx, o, text, name, "POST");
      if (family === "gateway") return applyGateway(ctx, o, text, name, "POST");
      if (family === "lb") return applyLb(ctx, o, text, name, "POST"); // Service, EndpointSlice
      // Validate locally first: errors name file:line:path; warnings go to stderr.
      const resources = parsePolicies(text, name, { onWarning: (w) => ctx.err(warningText(w) + "\n") });
      if (o.impact) return showImpact(ctx, o, text, name, false);
      if (o.dryRun) {
        ctx.out(`${name}: ${resources.length} policies valid (dry run, nothing applied)\n`);
        return;
      }
      await send(ctx, o, "POST", text, name, () => resources);
    },
  );
}

export function deleteCommand(ctx: CliContext): Command {
  const cmd = new Command("delete")
    .description("delete the policies a file names")
    .requiredOption("-f, --filename <file>", "policy file, or - for standard input")
    .option("--dry-run", "with --impact: change nothing")
    .addOption(socketOption())
    .addOption(outputOption());
  for (const opt of impactOptions()) cmd.addOption(opt);
  return clusterOptions(cmd).action(
    async (o: ClusterFlags & ImpactFlags & { filename: string; dryRun?: boolean }) => {
      const { text, name } = readInput(o.filename);
      const family = fileFamily(text, name);
      servicesOnly(o, family);
      if (family === "tracing") return applyTracing(ctx, o, text, name, "DELETE");
      if (family === "gateway") return applyGateway(ctx, o, text, name, "DELETE");
      if (family === "lb") return applyLb(ctx, o, text, name, "DELETE");
      if (o.impact) {
        parsePolicies(text, name);
        return showImpact(ctx, o, text, name, true);
      }
      if (o.dryRun)
        throw new MembraneError("CLI_USAGE", "Cannot use --dry-run on delete without --impact", {
          hint: `run \`membrane delete --dry-run --impact -f ${name}\` to see what deleting would change`,
        });
      await send(ctx, o, "DELETE", text, name, () => parsePolicies(text, name));
    },
  );
}
