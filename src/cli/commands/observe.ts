/**
 * `membrane observe`: flows like `hubble observe`. The flags compile into the
 * one filter (src/observe/flags.ts) that the agent evaluates, or that
 * `--input FILE` applies to saved flows offline.
 */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import {
  filterFromFlags,
  FLOW_PROTOCOLS,
  formatCompact,
  formatJson,
  formatRecords,
  parseFlowLines,
  parseOutputFormat,
  selectRecords,
  type FlowRecord,
  type ObserveFlags,
} from "../../observe/index.js";
import { MembraneError } from "../../errors.js";
import type { CliContext } from "../context.js";
import { client, socketOption } from "../agent-client.js";
import { observeFromServer, type ServerFlags } from "./observe-server.js";

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export function observeCommand(ctx: CliContext): Command {
  const cmd = new Command("observe")
    .description(
      "show flows: who talked to whom, the verdict, and for every drop the reason and the policy that decided",
    )
    .option("-f, --follow", "keep printing new flows")
    .option("--last <n>", "the last N matching flows (default 20 without --follow)")
    .option("--since <time>", "flows since an RFC 3339 time or a duration ago (90s, 5m, 1h)")
    .option("--until <time>", "flows until an RFC 3339 time or a duration ago")
    .option("--input <file>", "read saved flows (JSON lines, as -o json writes) instead of asking the agent")
    .option("-o, --output <format>", "compact | json | table", "compact")
    .option("--utc", "print times in UTC")
    .option(
      "--server <addr>",
      "read from a Hubble Observer API: unix:/path, host:port (gRPC), or relay (the whole cluster through `membrane relay`)",
    )
    .option("--tls-ca <file>", "with --server host:port: TLS, trusting this CA")
    .option("--tls-cert <file>", "with --tls-ca: client certificate (mutual TLS)")
    .option("--tls-key <file>", "with --tls-ca: client key (mutual TLS)")
    .option("--tls-server-name <name>", "with --tls-ca: the name the server's certificate carries")
    .addOption(socketOption());
  const repeatable: [string, string][] = [
    ["namespace", "a namespace (either side)"],
    ["pod", "a pod, [namespace/]name (either side)"],
    ["from-pod", "source pod"],
    ["to-pod", "destination pod"],
    ["service", "a Service, [namespace/]name (either side)"],
    ["from-service", "source Service (replies from its ClusterIP)"],
    ["to-service", "destination Service (the ClusterIP or NodePort the client dialled)"],
    ["label", "a label selector like app=web (either side)"],
    ["from-label", "source label selector"],
    ["to-label", "destination label selector"],
    ["identity", "a numeric identity (either side)"],
    ["from-identity", "source identity"],
    ["to-identity", "destination identity"],
    ["ip", "an address (either side)"],
    ["from-ip", "source address"],
    ["to-ip", "destination address"],
    ["port", "a port (either side)"],
    ["from-port", "source port"],
    ["to-port", "destination port"],
    ["verdict", "FORWARDED | DROPPED | AUDIT | ..."],
    ["type", "policy-verdict | drop | trace | l7"],
    ["protocol", `L4 or L7 protocol: ${FLOW_PROTOCOLS.join(" | ")}`],
    ["http-status", "HTTP status (L7 flows)"],
    ["http-method", "HTTP method (L7 flows)"],
    ["http-path", "HTTP path regex (L7 flows)"],
    ["traffic-direction", "ingress | egress"],
    ["node-name", "node name"],
  ];
  for (const [flag, help] of repeatable) cmd.option(`--${flag} <value>`, `${help} (repeatable)`, collect);
  return cmd
    .addHelpText(
      "after",
      `
--protocol takes L4 protocols (tcp, udp, sctp, icmp, icmpv4, icmpv6) and the L7 protocols of
the proxy's flows (http, dns, kafka: requests and answers it judged, with --type l7).

Examples:
  $ membrane observe --verdict DROPPED
  $ membrane observe --type l7 --protocol kafka
  $ membrane observe --follow --pod default/deathstar
  $ membrane observe --last 100 -o json > flows.json
  $ membrane observe --input flows.json --to-pod deathstar --port 80
  $ membrane observe --to-service default/web --verdict DROPPED
  $ membrane observe --server unix:/run/membrane/hubble.sock --verdict DROPPED
  $ membrane observe --server node1:4245 --tls-ca ca.pem --follow
  $ membrane observe --server relay --follow          (every node, through \`membrane relay\`)
`,
    )
    .action(
      async (
        o: ObserveFlags &
          Partial<ServerFlags> & { input?: string; output: string; utc?: boolean; socket: string },
      ) => {
        const format = parseOutputFormat(o.output);
        const req = filterFromFlags(o);
        if (req.number === undefined && !req.follow && req.since === undefined) req.number = 20;
        const print = { utc: o.utc === true };
        if (o.input !== undefined) {
          let text: string;
          try {
            text = readFileSync(o.input, "utf8");
          } catch (e) {
            throw new MembraneError("CLI_USAGE", `Cannot read ${o.input}: ${(e as Error).message}`);
          }
          const recs = selectRecords(parseFlowLines(text, o.input), req);
          if (recs.length) ctx.out(formatRecords(recs, format, print) + "\n");
          return;
        }
        if (o.server !== undefined)
          return observeFromServer(ctx, { ...o, server: o.server }, req, format, print);
        const c = client(o);
        if (!req.follow) {
          const recs = (await c.request("POST", "/v1/flows", req)) as FlowRecord[];
          if (recs.length) ctx.out(formatRecords(recs, format, print) + "\n");
          return;
        }
        if (format === "table")
          throw new MembraneError("CLI_USAGE", "Cannot use -o table with --follow: use compact or json");
        const ac = new AbortController();
        process.once("SIGINT", () => ac.abort());
        await c
          .stream(
            "POST",
            "/v1/flows/follow",
            req,
            (item) =>
              ctx.out(
                (format === "json"
                  ? formatJson(item as FlowRecord)
                  : formatCompact(item as FlowRecord, print)) + "\n",
              ),
            ac.signal,
          )
          .catch((e: unknown) => {
            if (!ac.signal.aborted) throw e;
          });
      },
    );
}
