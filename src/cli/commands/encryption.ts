/**
 * `membrane encryption status`: this node's tunnel and every peer (mode, key age, last handshake);
 * with IPsec also each peer's IKE state and CHILD_SAs (SPIs, algorithm, age, next rekey).
 */
import { Command } from "commander";
import type { CliContext } from "../context.js";
import { client, outputOption, show, socketOption, type ViewFormat } from "../agent-client.js";
import type { EncryptionStatus, PeerStatus } from "../../encryption/mode.js";

/** Seconds as "42s", "7m", "3h", "2d". */
export function age(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

const since = (iso: string | undefined, now: number): string =>
  iso === undefined ? "-" : age(Math.max(0, (now - Date.parse(iso)) / 1000));

export function encryptionRows(s: EncryptionStatus, now = Date.now()): string[][] {
  return [
    ["PEER", "MODE", "ENDPOINT", "ALLOWED IPS", "KEY AGE", "LAST HANDSHAKE", "RX", "TX"],
    [
      `(this node) ${s.interface}`,
      `${s.mode} (${s.impl})${s.strict ? ", strict" : ""}`,
      `:${s.port}`,
      s.strictCidrs ? `strict: ${s.strictCidrs.join(",")}` : "-",
      age(s.keyAgeSeconds),
      "-",
      "-",
      "-",
    ],
    ...s.peers.flatMap((p) => [
      [
        p.node,
        p.ikeState !== undefined ? `${s.mode} (IKE ${p.ikeState})` : s.mode,
        p.endpoint,
        p.allowedIps.join(",") || "-",
        since(p.keyCreatedAt, now),
        p.lastHandshake === undefined ? "never" : `${since(p.lastHandshake, now)} ago`,
        String(p.rxBytes),
        String(p.txBytes),
      ],
      ...saRows(p),
    ]),
  ];
}

/** IPsec: one row per CHILD_SA under its peer (two while a rekey overlaps). */
function saRows(p: PeerStatus): string[][] {
  return (p.sas ?? []).map((sa) => [
    `  SA ${sa.spiIn}/${sa.spiOut}`,
    `${sa.state} ${sa.encryption}`,
    "-",
    "-",
    `up ${age(sa.installedSeconds)}`,
    sa.rekeyInSeconds !== undefined ? `rekey in ${age(sa.rekeyInSeconds)}` : "-",
    String(sa.bytesIn),
    String(sa.bytesOut),
  ]);
}

export function encryptionCommand(ctx: CliContext): Command {
  const cmd = new Command("encryption").description(
    "transparent encryption between nodes (WireGuard or IPsec)",
  );
  cmd.addCommand(
    new Command("status")
      .description(
        "this node's tunnel and each peer: mode, key age, last handshake, bytes; IPsec: IKE state and each SA (SPIs, algorithm, age, next rekey)",
      )
      .addOption(socketOption())
      .addOption(outputOption())
      .addHelpText(
        "after",
        "\nNeeds an agent started with --encryption wireguard or --encryption ipsec (cluster mode).\nSPIs are shown as charon reports them (in/out); keys never are.\n\nExamples:\n  $ membrane encryption status\n  $ membrane encryption status -o json\n",
      )
      .action(async (o: { socket: string; output: ViewFormat }) => {
        const s = (await client(o).request("GET", "/v1/encryption")) as EncryptionStatus;
        show(ctx, o.output, s, () => encryptionRows(s));
        if (o.output === "table" && s.lastError) ctx.out(`last error: ${s.lastError}\n`);
      }),
  );
  return cmd;
}
