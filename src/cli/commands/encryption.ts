/**
 * `membrane encryption status`: this node's encryption and every peer: WireGuard (interface, key
 * age, last handshake, bytes) or the mTLS tunnel (key age, sessions, streams, refusals, bytes).
 */
import { Command } from "commander";
import type { CliContext } from "../context.js";
import { client, outputOption, show, socketOption, type ViewFormat } from "../agent-client.js";
import type { EncryptionStatus } from "../../encryption/wireguard.js";
import type { MtlsTunnelStatus } from "../../encryption/mtls/agent.js";

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
    ...s.peers.map((p) => [
      p.node,
      s.mode,
      p.endpoint,
      p.allowedIps.join(",") || "-",
      since(p.keyCreatedAt, now),
      p.lastHandshake === undefined ? "never" : `${since(p.lastHandshake, now)} ago`,
      String(p.rxBytes),
      String(p.txBytes),
    ]),
  ];
}

export function tunnelRows(s: MtlsTunnelStatus, now = Date.now()): string[][] {
  return [
    ["PEER", "MODE", "ENDPOINT", "KEY AGE", "LAST HANDSHAKE", "SESSIONS", "STREAMS (OPEN/TOTAL)", "IN OK/REFUSED", "RX", "TX"], // prettier-ignore
    [
      "(this node)",
      `${s.mode}${s.strict ? ", strict" : ""}`,
      `:${s.port} (redirect :${s.redirectPort})`,
      age(s.keyAgeSeconds),
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
    ],
    ...s.peers.map((p) => [
      p.node,
      s.mode,
      p.endpoint,
      since(p.keyCreatedAt, now),
      p.lastHandshake === undefined ? "never" : `${since(p.lastHandshake, now)} ago`,
      String(p.sessions),
      `${p.streamsOpen}/${p.streamsTotal}`,
      `${p.inboundAccepted}/${p.inboundRefused}`,
      String(p.bytesIn),
      String(p.bytesOut),
    ]),
  ];
}

export function encryptionCommand(ctx: CliContext): Command {
  const cmd = new Command("encryption").description(
    "transparent encryption between nodes (WireGuard, mTLS tunnel)",
  );
  cmd.addCommand(
    new Command("status")
      .description(
        "this node's encryption and each peer: mode, key age, last handshake, bytes (mTLS tunnel: sessions, streams, refusals)",
      )
      .addOption(socketOption())
      .addOption(outputOption())
      .addHelpText(
        "after",
        "\nNeeds an agent started with --encryption wireguard or mtls-tunnel (cluster mode).\n\nExamples:\n  $ membrane encryption status\n  $ membrane encryption status -o json\n",
      )
      .action(async (o: { socket: string; output: ViewFormat }) => {
        const s = (await client(o).request("GET", "/v1/encryption")) as EncryptionStatus | MtlsTunnelStatus;
        show(ctx, o.output, s, () => (s.mode === "mtls-tunnel" ? tunnelRows(s) : encryptionRows(s)));
        if (o.output === "table" && s.lastError) ctx.out(`last error: ${s.lastError}\n`);
      }),
  );
  return cmd;
}
