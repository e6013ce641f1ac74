/** `membrane endpoint create|exec|label|delete|list`: workloads as network namespaces. */
import { ensureEndpointCgroup } from "../../datapath/endpoint-cgroup.js";
import { Command } from "commander";
import type { EndpointView } from "../../agent/agent.js";
import { AgentClient } from "../../agent/client.js";
import {
  checkLaunchTools,
  endpointWorkloadUser,
  hiddenDirectories,
  resolveWorkloadUser,
  runWorkload,
  workloadArgv,
  workloadEnv,
  WORKLOAD_ID_BASE,
} from "../../datapath/workload.js";
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
      e.egress.unenforced !== undefined
        ? "NOT ENFORCED (bridge)"
        : e.egress.enforced
          ? `enforced (${e.egress.entries})`
          : "open",
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
    .description(
      "run a command in the endpoint's network namespace (put it after --): unprivileged and blind to the agent unless --privileged",
    )
    .option("-n, --namespace <ns>", "the endpoint's namespace", "default")
    .option(
      "-u, --user <user[:group]>",
      "run as this user and group (names or numbers; the group defaults to the user's primary group); default: the endpoint's own uid and gid",
    )
    .option(
      "--privileged",
      "run as root with every capability in the host's mount namespace, where it can use the agent's API socket and relabel itself (only for trusted commands)",
    )
    .addOption(socketOption())
    .addHelpText(
      "after",
      `
Without --privileged the command runs as --user (by default uid and gid ${WORKLOAD_ID_BASE} + the endpoint's
id, so that workloads of different endpoints cannot ptrace or signal each other; no supplementary
groups), with empty capability sets (bounding, ambient, inheritable) and no_new_privs
(setuid binaries gain nothing), in a private mount namespace where the agent's socket directory, its
state directory, /run/membrane, /var/lib/membrane and /etc/membrane are covered by an empty read-only
tmpfs. As in a Kubernetes pod, it may bind ports below 1024 and open ICMP echo sockets; a program that
needs file capabilities (Debian's ping has cap_net_raw) cannot start without them: use --privileged. Its
environment is reset as sudo does: TERM, the locale and TZ are kept; PATH, HOME, USER and LOGNAME are
the user's (pass other variables with \`-- env NAME=VALUE command\`).
SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to this command are passed on to it; the exit code is the
command's (128+N when signal N killed it).

Examples:
  $ membrane endpoint exec tiefighter -- curl -s -m1 http://10.200.0.2/
  $ membrane endpoint exec deathstar -- python3 -m http.server 80
  $ membrane endpoint exec deathstar --user nobody:nogroup -- id
  $ membrane endpoint exec deathstar --privileged -- ip addr
`,
    )
    .action(
      async (
        name: string,
        command: string[],
        o: { namespace: string; socket: string; user?: string; privileged?: boolean },
      ) => {
        if (o.privileged === true && o.user !== undefined) {
          throw new MembraneError(
            "CLI_USAGE",
            "Cannot use --user with --privileged: --privileged runs as root",
            {
              hint: "Drop one of the two.",
            },
          );
        }
        const api = client(o);
        const ep = (await api.request(
          "GET",
          `/v1/endpoints/${enc(o.namespace)}/${enc(name)}`,
        )) as EndpointView;
        let argv: string[];
        let env: Record<string, string> | undefined;
        const cgroup = ensureEndpointCgroup(ep.netns);
        if (o.privileged === true) {
          argv = workloadArgv(ep.netns, command, { privileged: true }, cgroup);
        } else {
          checkLaunchTools();
          const user = o.user !== undefined ? resolveWorkloadUser(o.user) : endpointWorkloadUser(ep);
          const status = (await api.request("GET", "/v1/status")) as { stateDir?: unknown };
          const stateDir = typeof status.stateDir === "string" ? status.stateDir : undefined;
          argv = workloadArgv(
            ep.netns,
            command,
            { user, hide: hiddenDirectories(o.socket, stateDir) },
            cgroup,
          );
          env = workloadEnv(user, process.env);
        }
        ctx.exitCode = await runWorkload(argv, env);
      },
    );
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
    .description(
      "delete an endpoint, its namespace and its address; processes still running in it are stopped first",
    )
    .option("-n, --namespace <ns>", "the endpoint's namespace", "default")
    .option(
      "--grace-period <seconds>",
      "how long processes in the endpoint get to exit after SIGTERM before SIGKILL (0-300)",
      String(DEFAULT_GRACE_SECONDS),
    )
    .addOption(socketOption())
    .addHelpText(
      "after",
      `
As Kubernetes does with a pod's containers, every process still inside the endpoint's network namespace
gets SIGTERM, then SIGKILL once the grace period is over; the command says how many it stopped.

Examples:
  $ membrane endpoint delete xwing
  $ membrane endpoint delete xwing --grace-period 0
`,
    )
    .action(async (name: string, o: { namespace: string; socket: string; gracePeriod: string }) => {
      const grace = parseGrace(o.gracePeriod);
      const api = new AgentClient({ socketPath: o.socket, timeoutMs: (grace + 30) * 1000 });
      const res = (await api.request(
        "DELETE",
        `/v1/endpoints/${enc(o.namespace)}/${enc(name)}?gracePeriodSeconds=${grace}`,
      )) as { stopped?: unknown } | undefined;
      const n = typeof res?.stopped === "number" ? res.stopped : 0;
      const procs = n === 0 ? "no process was running in it" : `stopped ${n} process${n === 1 ? "" : "es"}`;
      ctx.out(`endpoint ${o.namespace}/${name} deleted (${procs})\n`);
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

const DEFAULT_GRACE_SECONDS = 10;

function parseGrace(text: string): number {
  if (!/^\d{1,3}$/.test(text) || Number(text) > 300) {
    throw new MembraneError("CLI_USAGE", `Cannot read --grace-period "${text}": write whole seconds, 0-300`, {
      location: { path: "--grace-period" },
    });
  }
  return Number(text);
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
