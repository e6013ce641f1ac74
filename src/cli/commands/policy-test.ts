/**
 * `membrane policy test FILE|DIR...`: runs scenario files against the
 * policy engine and reports every query as PASS or FAIL. With --datapath the
 * same files are built for real (agent with its L7 proxy, namespaces,
 * nftables) and every query is sent as a real connection or request; what
 * cannot be built is SKIPPED.
 */
import { spawnSync } from "node:child_process";
import { Command, Option } from "commander";
import { escapeControls, MembraneError } from "../../errors.js";
import { runScenarioText, type ScenarioResult } from "../../policy/scenario/index.js";
import {
  countDatapath,
  datapathPrefixStem,
  runDatapathText,
  type DatapathScenarioResult,
} from "../../scenario/datapath.js";
import { type CliContext, type GlobalOptions, OUTPUT_FORMATS, type OutputFormat } from "../context.js";
import { expandScenarioPaths, readInputFile } from "../files.js";
import {
  countResults,
  errorLines,
  flowText,
  scenarioJson,
  scenarioLines,
  warningLines,
  summaryLine,
  table,
  toJson,
  verdictText,
} from "../format.js";

interface TestOptions extends GlobalOptions {
  readonly output: OutputFormat;
  readonly run?: string;
  readonly datapath?: boolean;
  readonly netnsPrefix?: string;
  readonly nodes?: string;
}

const EXAMPLES = `
Each query line reads:
  PASS|FAIL  <from> -> <to> <proto>/<port> [L7 request]  expected=<verdict> actual=<verdict>  by: <deciding rule>
and the run ends with the line "N passed, M failed" (N, M = queries; a file that
cannot be loaded counts as one failure and its error is printed).

Exit codes: 0 all passed, 1 a query failed or a file is invalid, 2 bad usage.

Examples:
  $ membrane policy test examples/starwars/sw-l7.yaml
  $ membrane policy test examples/                      # every *.yaml / *.yml below, sorted
  $ membrane policy test examples/ --run '^sw-'         # only scenarios whose name matches
  $ membrane policy test examples/ -o json | jq .failed

With --datapath (root; needs ip, nft, ping) each scenario gets a scratch node: an
agent started in-process, endpoints as network namespaces with the scenario's
addresses, an outside namespace per world:/cidr: address, and every TCP, UDP
and ICMP echo query is sent as a real connection (answered = allow, no answer
within the timeout = deny/drop), and every L7 query as a real request through
the node's proxy: HTTP (200 / 403), Kafka (error 29 = denied), TLS SNI (reset =
denied), DNS (REFUSED = denied); the scenario's DNS answers are served by a
resolver and learned through the DNS proxy. Queries this mode cannot build
(mutual authentication, SCTP sockets, ICMP types other than echo) are SKIPPED
with the reason, never passed; the run ends with "N passed, M failed, K skipped".
  $ sudo membrane policy test --datapath examples/

With --nodes N (N >= 2; needs etcd) each scenario gets a scratch cluster
instead: a real etcd, an underlay bridge, and N agents in cluster mode, each in
its own node namespace (native routing). The endpoints are spread over the
nodes alternately in file order, as far as their addresses allow (a node's pods
are inside its own pod CIDR, and the scenario's addresses are kept), the
policies are applied once through the cluster, and the run waits until every
node realized them and knows every other node's endpoints; packets then cross
the underlay and each node judges them by the sender's identity. A scenario whose
endpoints cannot be split over the nodes is SKIPPED with the reason. The node of
each endpoint is listed per scenario (and in -o json, "nodes").
  $ sudo membrane policy test --datapath --nodes 2 examples/
`;

export function policyTestCommand(ctx: CliContext): Command {
  return new Command("test")
    .description("check scenario files: the verdict of every query against the expected one")
    .argument("<paths...>", "scenario files, or directories searched recursively for *.yaml / *.yml")
    .addOption(new Option("-o, --output <format>", "output format").choices(OUTPUT_FORMATS).default("text"))
    .option("--run <regex>", "only scenarios whose name matches this regular expression")
    .option(
      "--datapath",
      "build each scenario on a scratch node and send every L3/L4 query as real packets (root)",
    )
    .option(
      "--nodes <n>",
      "with --datapath: spread each scenario's endpoints over N nodes of a scratch cluster on etcd (default 1: one node)",
    )
    .option(
      "--netns-prefix <stem>",
      "with --datapath: name the scratch namespaces <stem><n>-... (1-8 of a-z 0-9, starting with a letter; default mbp + 4 random)",
    )
    .addHelpText("after", EXAMPLES)
    .action(async (paths: string[], _opts: TestOptions, cmd: Command) => {
      const opts = cmd.optsWithGlobals<TestOptions>();
      const filter = nameFilter(opts.run);
      const files = expandScenarioPaths(paths);
      const nodes = nodeCount(opts.nodes);
      if (opts.datapath) {
        await runDatapath(ctx, files, opts, filter, nodes);
        return;
      }
      if (nodes !== 1) {
        throw new MembraneError(
          "CLI_USAGE",
          "Cannot use --nodes without --datapath: the offline check has no nodes",
          {
            hint: "add --datapath (root), or drop --nodes",
          },
        );
      }
      const results: ScenarioResult[] = [];
      for (const file of files) {
        const text = readInputFile(file);
        const r = runScenarioText(text, file, filter ? { filter } : {});
        if (r) results.push(r);
      }
      const { passed, failed } = countResults(results);
      const debug = opts.debug === true;
      if (opts.output === "json") {
        ctx.out(toJson({ scenarios: results.map((s) => scenarioJson(s, debug)), passed, failed }));
      } else {
        const lines: string[] = [];
        for (const s of results) lines.push(...scenarioLines(s, { debug }), "");
        lines.push(summaryLine(passed, failed));
        ctx.out(lines.join("\n") + "\n");
      }
      ctx.exitCode = failed > 0 ? 1 : 0;
    });
}

async function runDatapath(
  ctx: CliContext,
  files: readonly string[],
  opts: TestOptions,
  filter: ((name: string) => boolean) | undefined,
  nodes: number,
): Promise<void> {
  datapathPreflight(nodes);
  const stem = opts.netnsPrefix ?? datapathPrefixStem();
  if (!/^[a-z][a-z0-9]{0,7}$/.test(stem)) {
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot use --netns-prefix ${JSON.stringify(escapeControls(stem))}: write 1-8 of a-z and 0-9, starting with a letter`,
    );
  }
  const debug = opts.debug === true;
  const results: DatapathScenarioResult[] = [];
  for (const [i, file] of files.entries()) {
    const text = readInputFile(file);
    const r = await runDatapathText(text, file, {
      prefix: `${stem}${i}-`,
      ...(filter ? { filter } : {}),
      ...(nodes > 1 ? { nodes } : {}),
    });
    if (!r) continue;
    results.push(r);
    // Text output streams per scenario: a datapath run takes a while.
    if (opts.output !== "json") ctx.out([...datapathLines(r, debug), ""].join("\n") + "\n");
  }
  const { passed, failed, skipped } = countDatapath(results);
  if (opts.output === "json") {
    const scenarios = results.map((s) =>
      s.error && !debug && s.error.stack !== undefined
        ? { ...s, error: { ...s.error, stack: undefined } }
        : s,
    );
    ctx.out(toJson({ scenarios, passed, failed, skipped }));
  } else {
    ctx.out(`${summaryLine(passed, failed)}, ${skipped} skipped\n`);
  }
  ctx.exitCode = failed > 0 ? 1 : 0;
}

/** The lines of one scenario in --datapath mode: the offline format, with SKIP lines. */
export function datapathLines(s: DatapathScenarioResult, debug: boolean): string[] {
  const lines = [`=== ${s.name ?? "(not loaded)"} (${s.file})`];
  if (s.error) {
    lines.push(...errorLines(s.error, debug).map((l, i) => (i === 0 ? `ERROR ${l}` : `      ${l}`)));
    return lines;
  }
  lines.push(...warningLines(s.warnings));
  for (const n of s.nodes ?? [])
    lines.push(`    node ${n.node} (${n.podCidrs.join(", ")}): ${n.endpoints.join(", ") || "-"}`);
  const out = table(
    s.results.map((r) => [
      r.outcome.toUpperCase(),
      flowText(r),
      `expected=${verdictText(r.expect, r.expectHow)}`,
      `actual=${r.actual !== undefined ? verdictText(r.actual, r.actualHow) : "-"}`,
      `by: ${r.decidedBy.join("; ")}`,
    ]),
  );
  s.results.forEach((r, i) => {
    lines.push(out[i] ?? "");
    if (r.outcome !== "fail") return;
    if (r.note !== undefined) lines.push(`      note: ${r.note}`);
    if (r.line !== undefined) lines.push(`      at: ${s.file}:${r.line} (queries[${r.index}])`);
  });
  return lines;
}

/** --nodes: an integer from 1 to 16. */
function nodeCount(text: string | undefined): number {
  if (text === undefined) return 1;
  const n = /^[0-9]{1,2}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 16)) {
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot use --nodes ${JSON.stringify(escapeControls(text.slice(0, 32)))}: give a whole number of nodes from 1 to 16`,
    );
  }
  return n;
}

function datapathPreflight(nodes: number): void {
  if (process.getuid?.() !== 0) {
    throw new MembraneError(
      "CLI_USAGE",
      "Cannot run policy test --datapath: it creates network namespaces and nftables tables, which needs root",
      { hint: "run it with sudo, or drop --datapath to check the verdicts offline" },
    );
  }
  for (const bin of ["ip", "nft", "ping", ...(nodes > 1 ? ["etcd"] : [])]) {
    if (spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0) {
      throw new MembraneError("CLI_USAGE", `Cannot run policy test --datapath: \`${bin}\` is not installed`, {
        hint: "install the system packages: sudo bash scripts/install-system-deps.sh",
      });
    }
  }
}

function nameFilter(run: string | undefined): ((name: string) => boolean) | undefined {
  if (run === undefined) return undefined;
  let re: RegExp;
  try {
    re = new RegExp(run);
  } catch (e) {
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot use --run ${JSON.stringify(run)}: not a valid regular expression`,
      {
        cause: e,
        hint: "give a JavaScript regular expression, e.g. --run '^sw-'",
      },
    );
  }
  return (name) => re.test(name);
}
