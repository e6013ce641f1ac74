/**
 * `membrane policy trace`: explains, step by step, what the policy engine
 * decides for one connection attempt (Cilium's former `cilium policy trace`).
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { MembraneError } from "../../errors.js";
import { parseAddr } from "../../labels/cidr.js";
import { parsePolicies } from "../../policy/api/index.js";
import {
  type DnsObservation,
  parseScenario,
  QUERY_PROTOS,
  type QueryProto,
  type QuerySpec,
  traceQuery,
} from "../../policy/scenario/index.js";
import { isExtendedProtocol, type PolicyResource } from "../../policy/types.js";
import { type CliContext, OUTPUT_FORMATS, type OutputFormat } from "../context.js";
import { readInputFile } from "../files.js";
import { toJson } from "../format.js";

interface TraceOptions {
  readonly endpoints: string;
  readonly policy?: string[];
  readonly from: string;
  readonly to: string;
  readonly proto: QueryProto;
  readonly port?: number;
  readonly icmpType?: number;
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly dnsQuery?: string;
  readonly dns?: DnsObservation[];
  readonly sni?: string;
  readonly kafkaApiKey?: string;
  readonly kafkaTopic?: string;
  readonly auth?: boolean;
  readonly output: OutputFormat;
}

const EXAMPLES = `
The endpoints file uses the scenario format (name and queries optional): endpoints,
and optionally namespaces, services, config and policies, so a scenario file works
as is. Peers (--from, --to): an endpoint name, namespace/name, host, world:<ip>,
cidr:<ip>, remote-node:<ip>, kube-apiserver:<ip> or fqdn:<name> (needs --dns).

Prints the engine's steps, then "Final verdict: ALLOWED" or "Final verdict: DENIED (<how>)".
Exit codes: 0 for either verdict, 2 for bad input.

Examples:
  $ membrane policy trace --endpoints examples/starwars/sw-l3-l4.yaml \\
      --from xwing --to deathstar --proto TCP --port 80
  $ membrane policy trace --endpoints examples/starwars/sw-l3-l4.yaml --policy examples/policies/sw-l7.yaml \\
      --from tiefighter --to deathstar --port 80 --method PUT --path /v1/exhaust-port
  $ membrane policy trace --endpoints examples/fqdn/tofqdns.yaml --from app --to fqdn:api.github.com \\
      --port 443 --dns api.github.com=140.82.112.5 -o json
`;

export function policyTraceCommand(ctx: CliContext): Command {
  return new Command("trace")
    .description("explain the verdict for one connection attempt")
    .requiredOption(
      "--endpoints <file>",
      "scenario-format file with endpoints (and optional namespaces, services, config, policies)",
    )
    .option("--policy <files...>", "extra policy YAML files (CNP, CCNP, NetworkPolicy; multi-document)")
    .requiredOption("--from <peer>", "source: endpoint, namespace/name, host, world:<ip>, ...")
    .requiredOption("--to <peer>", "destination, same notation as --from")
    .addOption(new Option("--proto <proto>", "protocol").choices(QUERY_PROTOS).default("TCP"))
    .option("--port <port>", "destination port (TCP, UDP, SCTP)", intIn(1, 65535))
    .option("--icmp-type <type>", "ICMP type (ICMP, ICMPv6)", intIn(0, 255))
    .option("--method <method>", "HTTP method (with --path)")
    .option("--path <path>", "HTTP path (with --method)")
    .option("--host <host>", "HTTP host header")
    .option("--dns-query <name>", "a DNS request for this name, sent to --to (port 53 unless --port)")
    .option("--dns <name=ip,...>", "a DNS answer seen before the connection (repeatable)", collectDns, [])
    .option("--sni <name>", "TLS server name of the connection")
    .option("--kafka-api-key <key>", "Kafka request type (produce, fetch, ...)")
    .option("--kafka-topic <topic>", "Kafka topic (with --kafka-api-key)")
    .option("--auth", "a valid mutual-authentication entry exists for the pair")
    .addOption(new Option("-o, --output <format>", "output format").choices(OUTPUT_FORMATS).default("text"))
    .addHelpText("after", EXAMPLES)
    .action((opts: TraceOptions) => {
      const world = parseScenario(readText(opts.endpoints), opts.endpoints, { world: true });
      const extraPolicies: PolicyResource[] = [];
      for (const f of opts.policy ?? []) {
        extraPolicies.push(...parsePolicies(readText(f), f, { meshAuth: world.config.meshAuth === true }));
      }
      const q = querySpec(opts);
      const { decision, steps } = traceQuery(world, q, { extraPolicies });
      const verdict =
        decision.verdict === "allow"
          ? "ALLOWED"
          : `DENIED${decision.how !== undefined ? ` (${decision.how})` : ""}`;
      if (opts.output === "json") {
        ctx.out(toJson({ query: q, verdict: decision.verdict, how: decision.how, steps, decision }));
      } else {
        // The engine may end its steps with the verdict already; print it once.
        const last = [...steps].reverse().find((l) => l.trim() !== "");
        const lines = last?.startsWith("Final verdict:")
          ? [...steps]
          : [...steps, `Final verdict: ${verdict}`];
        ctx.out(lines.join("\n") + "\n");
      }
    });
}

function querySpec(o: TraceOptions): QuerySpec {
  const icmp = o.proto === "ICMP" || o.proto === "ICMPv6";
  if (icmp && o.icmpType === undefined) throw usage(`--proto ${o.proto} needs --icmp-type`);
  if (icmp && o.port !== undefined) throw usage(`--proto ${o.proto} has no ports; use --icmp-type`);
  if (!icmp && o.icmpType !== undefined) throw usage(`--icmp-type applies only to --proto ICMP or ICMPv6`);
  const portless = isExtendedProtocol(o.proto);
  if (portless && o.port !== undefined) throw usage(`--proto ${o.proto} has no ports; leave out --port`);
  const port = o.port ?? (o.dnsQuery !== undefined ? 53 : undefined);
  if (!icmp && !portless && port === undefined) throw usage(`--proto ${o.proto} needs --port`);
  if ((o.method === undefined) !== (o.path === undefined)) throw usage("--method and --path go together");
  if (o.host !== undefined && o.method === undefined) throw usage("--host needs --method and --path");
  if (o.kafkaTopic !== undefined && o.kafkaApiKey === undefined)
    throw usage("--kafka-topic needs --kafka-api-key");
  const l7 = [o.method, o.dnsQuery, o.kafkaApiKey].filter((x) => x !== undefined).length;
  if (l7 > 1) throw usage("give only one of --method/--path, --dns-query, --kafka-api-key");
  return {
    from: o.from,
    to: o.to,
    proto: o.proto,
    ...(port !== undefined ? { port } : {}),
    ...(o.icmpType !== undefined ? { icmpType: o.icmpType } : {}),
    ...(o.method !== undefined && o.path !== undefined
      ? { http: { method: o.method, path: o.path, ...(o.host !== undefined ? { host: o.host } : {}) } }
      : {}),
    ...(o.dnsQuery !== undefined ? { dnsQuery: o.dnsQuery } : {}),
    ...(o.kafkaApiKey !== undefined
      ? { kafka: { apiKey: o.kafkaApiKey, ...(o.kafkaTopic !== undefined ? { topic: o.kafkaTopic } : {}) } }
      : {}),
    ...(o.sni !== undefined ? { tls: { sni: o.sni } } : {}),
    ...(o.dns && o.dns.length > 0 ? { dns: o.dns } : {}),
    ...(o.auth ? { auth: true } : {}),
  };
}

function usage(why: string): MembraneError {
  return new MembraneError("CLI_USAGE", `Cannot trace: ${why}`, { hint: "see membrane policy trace --help" });
}

/** At most LIMITS.bytes (policy/api/limits.ts); a missing file is CLI_USAGE naming it. */
function readText(file: string): string {
  return readInputFile(file);
}

function intIn(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max)
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}.`);
    return n;
  };
}

function collectDns(v: string, prev: DnsObservation[]): DnsObservation[] {
  const eq = v.indexOf("=");
  const name = v.slice(0, eq);
  const ips = v
    .slice(eq + 1)
    .split(",")
    .filter((x) => x !== "");
  if (eq <= 0 || ips.length === 0) throw new InvalidArgumentError("expected <name>=<ip>[,<ip>...].");
  const bad = ips.find((ip) => parseAddr(ip) === undefined);
  if (bad !== undefined) throw new InvalidArgumentError(`"${bad}" is not an IP address.`);
  return [...prev, { name, ips }];
}
