/**
 * `membrane auth`: mutual authentication on this node (agent started with --spiffe).
 *   auth list              authenticated identity pairs the kernel holds, their expiry and node
 *   auth svid IDENTITY     the identity's X.509-SVID (certificates only, never the key)
 *   auth revoke IDENTITY   withhold its SVID from handshakes and remove its pairs
 *   auth restore IDENTITY  undo a revoke
 *   auth rotate IDENTITY   issue the identity's SVID again now (its pairs authenticate again)
 *   auth peers             pooled connections to peer nodes' agents and their counters
 */
import { Command, Option } from "commander";
import { MembraneError } from "../../errors.js";
import type { CliContext } from "../context.js";
import { client, outputOption, show, socketOption, type ViewFormat } from "../agent-client.js";

interface PairsAnswer {
  pairs: { source: number; destination: number; node: string; expires: string }[];
  revoked: number[];
}

interface PeersAnswer {
  transport: string;
  peers: { node: string; host: string; since: string; requests: number; protocol?: string }[];
  client: unknown;
  served: unknown;
}

function identityArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 0x01ffffff)
    throw new MembraneError("CLI_USAGE", `Cannot use identity "${v}": give a number (see membrane get identities)`); // prettier-ignore
  return n;
}

export function authCommand(ctx: CliContext): Command {
  const list = new Command("list")
    .description("authenticated identity pairs held by the kernel (source, destination, node, expiry)")
    .addOption(outputOption())
    .addOption(socketOption())
    .action(async (o: { socket: string; output: ViewFormat }) => {
      const r = (await client(o).request("GET", "/v1/auth/pairs")) as PairsAnswer;
      show(ctx, o.output, r, () => [
        ["SOURCE", "DESTINATION", "NODE", "EXPIRES"],
        ...r.pairs.map((p) => [String(p.source), String(p.destination), p.node, p.expires]),
      ]);
      if (o.output === "table" && r.revoked.length > 0)
        ctx.out(`revoked identities: ${r.revoked.join(", ")}\n`);
    });
  const svid = new Command("svid")
    .argument("<identity>", "numeric identity (membrane get identities)")
    .description("the identity's X.509-SVID: SPIFFE ID, serial, validity and certificates in PEM (no key)")
    .addOption(new Option("-o, --output <format>", "pem | json").default("pem"))
    .addOption(socketOption())
    .action(async (id: string, o: { socket: string; output: string }) => {
      if (o.output !== "pem" && o.output !== "json")
        throw new MembraneError("CLI_USAGE", `Cannot print as -o ${o.output}: use pem or json`);
      const r = (await client(o).request("POST", "/v1/auth/svid", { identity: identityArg(id) })) as Record<string, unknown>; // prettier-ignore
      if (o.output === "json") ctx.out(JSON.stringify(r, null, 2) + "\n");
      else ctx.out(`# ${String(r["spiffeId"])} serial ${String(r["serial"])} valid ${String(r["notBefore"])} .. ${String(r["notAfter"])}\n${String(r["certificates"])}`); // prettier-ignore
    });
  const revoke = new Command("revoke")
    .argument("<identity>", "numeric identity")
    .description(
      "withhold the identity's SVID from handshakes and remove its pairs (its new connections under rules requiring authentication drop, reason 189)",
    ) // prettier-ignore
    .addOption(socketOption())
    .action(async (id: string, o: { socket: string }) => {
      const r = (await client(o).request("POST", "/v1/auth/revoke", { identity: identityArg(id) })) as { removedPairs: number }; // prettier-ignore
      ctx.out(`identity ${id} revoked; ${r.removedPairs} pair(s) removed\n`);
    });
  const restore = new Command("restore")
    .argument("<identity>", "numeric identity")
    .description("undo `auth revoke`: the identity may authenticate again")
    .addOption(socketOption())
    .action(async (id: string, o: { socket: string }) => {
      await client(o).request("POST", "/v1/auth/restore", { identity: identityArg(id) });
      ctx.out(`identity ${id} restored\n`);
    });
  const rotate = new Command("rotate")
    .argument("<identity>", "numeric identity of an endpoint of this node")
    .description("issue the identity's SVID again now (a new key); its pairs authenticate again with it")
    .addOption(socketOption())
    .action(async (id: string, o: { socket: string }) => {
      const r = (await client(o).request("POST", "/v1/auth/rotate", { identity: identityArg(id) })) as { rotated: { serial: string; notAfter: string } }; // prettier-ignore
      ctx.out(`identity ${id}: new SVID serial ${r.rotated.serial}, valid until ${r.rotated.notAfter}\n`);
    });
  const peers = new Command("peers")
    .description(
      "pooled authentication connections to the agents of peer nodes (cluster mode), and requests on them",
    )
    .addOption(outputOption())
    .addOption(socketOption())
    .action(async (o: { socket: string; output: ViewFormat }) => {
      const r = (await client(o).request("GET", "/v1/auth/peers")) as PeersAnswer;
      show(ctx, o.output, r, () => [
        ["NODE", "ADDRESS", "OPEN SINCE", "REQUESTS", "PROTOCOL"],
        ...r.peers.map((p) => [p.node, p.host, p.since, String(p.requests), p.protocol ?? "v1"]),
      ]);
      if (o.output === "table") ctx.out(`transport: ${r.transport}; asked: ${JSON.stringify(r.client)}; answered: ${JSON.stringify(r.served)}\n`); // prettier-ignore
    });
  return new Command("auth")
    .description(
      "mutual authentication (SPIFFE SVIDs, agent started with --spiffe): pairs, SVIDs, revocation",
    )
    .addCommand(list)
    .addCommand(svid)
    .addCommand(revoke)
    .addCommand(restore)
    .addCommand(rotate)
    .addCommand(peers)
    .addHelpText(
      "after",
      `
A rule with authentication: {mode: required} lets a new connection through once the
(source, destination) identity pair is authenticated: the agent holds the first packet,
has each end prove it holds its identity's SVID key (across nodes: one request on the TLS
1.3 connection it keeps to the peer node's agent, see auth peers) and releases it;
otherwise it drops with reason AUTH_REQUIRED (189) (membrane observe --verdict DROPPED).

Examples:
  $ membrane auth list
  $ membrane auth list -o json
  $ membrane auth svid 256
  $ membrane auth rotate 256
  $ membrane auth peers
`,
    );
}
