/** `membrane endpoint create|exec|label|delete|list`: workloads as network namespaces. */
import { spawn } from "node:child_process";
import { Command } from "commander";
import type { EndpointView } from "../../agent/agent.js";
import { MembraneError } from "../../errors.js";
import type { CliContext } from "../context.js";
import {
  client,
  outputOption,
  parseLabelArgs,
  show,
  socketOption,
  type ViewFormat,
} from "../agent-client.js";

export function endpointRows(eps: readonly EndpointView[]): string[][] {
  return [
    ["NAMESPACE", "NAME", "ID", "IDENTITY", "IPV4", "IPV6", "INGRESS", "EGRESS", "LABELS"],
    ...eps.map((e) => [
      e.namespace,
      e.name,
      String(e.id),
      String(e.identity),
      e.ipv4,
      e.ipv6 ?? "-",
      e.ingress.enforced ? `enforced (${e.ingress.entries})` : "open",
      e.egress.enforced ? `enforced (${e.egress.entries})` : "open",
      Object.entries(e.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(","),
    ]),
  ];
}

export function endpointCommand(ctx: CliContext): Command {
  const cmd = new Command("endpoint").description("create, run commands in, relabel and delete endpoints");
  cmd
    .command("create <name>")
    .description(
      "create an endpoint: a network namespace with a veth, an address and an identity from its labels",
    )
    .option("-n, --namespace <ns>", "the endpoint's namespace", "default")
    .option("-l, --labels <k=v,...>", "labels", "")
    .option(
      "-p, --ports <name=port/proto,...>",
      "named ports, for policies that name ports (e.g. http=80/TCP)",
      "",
    )
    .addOption(socketOption())
    .addOption(outputOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ membrane endpoint create deathstar --labels org=empire,class=deathstar\n  $ membrane endpoint create db --labels app=db --ports pg=5432/TCP\n",
    )
    .action(
      async (
        name: string,
        o: { namespace: string; labels: string; ports: string; socket: string; output: ViewFormat },
      ) => {
        const ep = (await client(o).request("POST", "/v1/endpoints", {
          name,
          namespace: o.namespace,
          labels: parseLabelArgs([o.labels]),
          ...(o.ports ? { ports: parsePortArgs(o.ports) } : {}),
        })) as EndpointView;
        show(ctx, o.output, ep, () => endpointRows([ep]));
      },
    );
  cmd
    .command("exec <name> <command...>")
    .description("run a command inside the endpoint's network namespace (put it after --)")
    .option("-n, --namespace <ns>", "the endpoint's namespace", "default")
    .addOption(socketOption())
    .addHelpText("after", "\nExample:\n  $ membrane endpoint exec tiefighter -- curl -s http://10.200.0.2/\n")
    .action(async (name: string, command: string[], o: { namespace: string; socket: string }) => {
      const ep = (await client(o).request(
        "GET",
        `/v1/endpoints/${enc(o.namespace)}/${enc(name)}`,
      )) as EndpointView;
      ctx.exitCode = await new Promise<number>((resolve) => {
        const child = spawn("ip", ["netns", "exec", ep.netns, ...command], { stdio: "inherit" });
        child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
        child.on("error", () => resolve(127));
      });
    });
  cmd
    .command("label <name> <labels...>")
    .description("change an endpoint's labels (key=value sets, key- removes); it is re-identified live")
    .option("-n, --namespace <ns>", "the endpoint's namespace", "default")
    .option("--replace", "replace all labels instead of merging")
    .addOption(socketOption())
    .addOption(outputOption())
    .addHelpText("after", "\nExample:\n  $ membrane endpoint label xwing org=empire\n")
    .action(
      async (
        name: string,
        labels: string[],
        o: { namespace: string; replace?: boolean; socket: string; output: ViewFormat },
      ) => {
        const ep = (await client(o).request(
          "PATCH",
          `/v1/endpoints/${enc(o.namespace)}/${enc(name)}/labels`,
          {
            labels: parseLabelArgs(labels),
            replace: o.replace === true,
          },
        )) as EndpointView;
        show(ctx, o.output, ep, () => endpointRows([ep]));
      },
    );
  cmd
    .command("delete <name>")
    .description("delete an endpoint, its namespace and its address")
    .option("-n, --namespace <ns>", "the endpoint's namespace", "default")
    .addOption(socketOption())
    .action(async (name: string, o: { namespace: string; socket: string }) => {
      await client(o).request("DELETE", `/v1/endpoints/${enc(o.namespace)}/${enc(name)}`);
      ctx.out(`endpoint ${o.namespace}/${name} deleted\n`);
    });
  cmd
    .command("list")
    .description("list endpoints (same as `membrane get endpoints`)")
    .addOption(socketOption())
    .addOption(outputOption())
    .action(async (o: { socket: string; output: ViewFormat }) => {
      const eps = (await client(o).request("GET", "/v1/endpoints")) as EndpointView[];
      show(ctx, o.output, eps, () => endpointRows(eps));
    });
  return cmd;
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

/** `http=80/TCP,dns=53/UDP` (protocol defaults to TCP). */
function parsePortArgs(text: string): { name: string; port: number; protocol: string }[] {
  return text
    .split(",")
    .filter((x) => x !== "")
    .map((part) => {
      const m = /^([a-z0-9-]+)=(\d+)(?:\/(TCP|UDP|SCTP))?$/i.exec(part.trim());
      if (!m)
        throw new MembraneError("CLI_USAGE", `Cannot read port "${part}": write name=port[/TCP|UDP|SCTP]`);
      return {
        name: (m[1] as string).toLowerCase(),
        port: Number(m[2]),
        protocol: (m[3] ?? "TCP").toUpperCase(),
      };
    });
}
