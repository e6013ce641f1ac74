/**
 * `membrane encryption status`: this node's tunnel and every peer (mode, key age, last handshake);
 * with IPsec also each peer's IKE state and CHILD_SAs (SPIs, algorithm, age, next rekey); with the
 * mTLS tunnel its sessions, streams and refusals per peer.
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
  const rot = s.rotation ?? { rotations: 0 };
  return [
    ["PEER", "MODE", "STRICT", "ENDPOINT", "ALLOWED IPS", "KEY AGE", "LAST HANDSHAKE", "RX", "TX"],
    [
      `(this node) ${s.interface}`,
      `${s.mode} (${s.impl})${s.nodeToNode ? ", node-to-node" : ""}`,
      s.strict ? `on (${(s.strictCidrs ?? []).join(",")})` : "off",
      `:${s.port}`,
      "-",
      `${age(s.keyAgeSeconds)}${rot.nextPublicKey ? ", rotating" : rot.nextAt ? `, next ${rot.nextAt}` : ""}`,
      "-",
      "-",
      "-",
    ],
    ...s.peers.flatMap((p) => [
      [
        p.node,
        `${p.ikeState !== undefined ? `${p.mode} (IKE ${p.ikeState})` : p.mode}${p.nodeToNode ? ", node-to-node" : ""}`,
        p.strict ? "on" : "off",
        p.endpoint,
        p.allowedIps.join(",") || "-",
        since(p.keyCreatedAt, now),
        p.lastHandshake === undefined ? "never" : `${since(p.lastHandshake, now)} ago (${p.handshake})`,
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
    "-",
    `up ${age(sa.installedSeconds)}`,
    sa.rekeyInSeconds !== undefined ? `rekey in ${age(sa.rekeyInSeconds)}` : "-",
    String(sa.bytesIn),
    String(sa.bytesOut),
  ]);
}

/** `get status`: one line for this node's encryption, one per peer (mode, strict, key age, handshake). */
export function encryptionSummaryRows(s: EncryptionStatus, now = Date.now()): string[][] {
  const where = s.tunnel ? `:${s.port} (redirect :${s.tunnel.redirectPort})` : `on ${s.interface}`;
  return [
    [
      "encryption",
      `${s.mode} (${s.impl}) ${where}, strict ${s.strict ? "on" : "off"}${s.nodeToNode ? ", node-to-node" : ""}, key age ${age(s.keyAgeSeconds)}${s.rotation?.nextPublicKey ? ", rotating" : ""}${s.lastError ? `; last error: ${s.lastError}` : ""}`,
    ],
    ...s.peers.map((p) => [
      `encryption peer ${p.node}`,
      `${p.mode}, strict ${p.strict ? "on" : "off"}, key age ${since(p.keyCreatedAt, now)}, last handshake ${p.lastHandshake === undefined ? "never" : `${since(p.lastHandshake, now)} ago`} (${p.handshake})`,
    ]),
  ];
}

/** The mTLS tunnel: a row per peer with its sessions, streams and inbound accepted/refused. */
export function tunnelRows(s: EncryptionStatus, now = Date.now()): string[][] {
  return [
    ["PEER", "MODE", "ENDPOINT", "KEY AGE", "LAST HANDSHAKE", "SESSIONS", "STREAMS (OPEN/TOTAL)", "IN OK/REFUSED", "RX", "TX"], // prettier-ignore
    [
      "(this node)",
      `${s.mode}${s.strict ? ", strict" : ""}`,
      `:${s.port}${s.tunnel ? ` (redirect :${s.tunnel.redirectPort})` : ""}`,
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
      p.mode,
      p.endpoint,
      since(p.keyCreatedAt, now),
      p.lastHandshake === undefined ? "never" : `${since(p.lastHandshake, now)} ago`,
      String(p.tunnel?.sessions ?? 0),
      `${p.tunnel?.streamsOpen ?? 0}/${p.tunnel?.streamsTotal ?? 0}`,
      `${p.tunnel?.inboundAccepted ?? 0}/${p.tunnel?.inboundRefused ?? 0}`,
      String(p.rxBytes),
      String(p.txBytes),
    ]),
  ];
}

interface RotateAnswer {
  readonly previousPublicKey: string;
  readonly publicKey: string;
  readonly keyCreatedAt: string;
}

export function encryptionCommand(ctx: CliContext): Command {
  const cmd = new Command("encryption").description(
    "transparent encryption between nodes (WireGuard, IPsec or the mTLS tunnel)",
  );
  cmd.addCommand(
    new Command("status")
      .description(
        "this node's tunnel and each peer: mode, key age, last handshake, bytes; IPsec: IKE state and each SA (SPIs, algorithm, age, next rekey); mTLS tunnel: sessions, streams, refusals",
      )
      .addOption(socketOption())
      .addOption(outputOption())
      .addHelpText(
        "after",
        "\nNeeds an agent started with --encryption wireguard, ipsec or mtls-tunnel (cluster mode).\nSPIs are shown as charon reports them (in/out); keys never are (mTLS tunnel: the root's fingerprint).\n\nExamples:\n  $ membrane encryption status\n  $ membrane encryption status -o json\n",
      )
      .action(async (o: { socket: string; output: ViewFormat }) => {
        const s = (await client(o).request("GET", "/v1/encryption")) as EncryptionStatus;
        show(ctx, o.output, s, () => (s.mode === "mtls-tunnel" ? tunnelRows(s) : encryptionRows(s)));
        if (o.output === "table" && s.lastError) ctx.out(`last error: ${s.lastError}\n`);
        if (o.output === "table" && s.rotation?.lastError)
          ctx.out(`last key rotation failed: ${s.rotation.lastError}\n`);
      }),
  );
  cmd.addCommand(
    new Command("rotate-key")
      .description(
        "give this node a new WireGuard or IPsec key without resetting connections: announce it to the peers, switch, publish (~5 s)",
      )
      .addOption(socketOption())
      .addOption(outputOption())
      .addHelpText(
        "after",
        "\nPeers learn the new public key through the cluster store. IPsec: the node's IKE SAs are made\nagain under the new key before the old ones close. Periodic rotation: the agent's\n--encryption-key-rotation 24h.\n\nExamples:\n  $ membrane encryption rotate-key\n  $ membrane encryption rotate-key -o json\n",
      )
      .action(async (o: { socket: string; output: ViewFormat }) => {
        const r = (await client(o).request("POST", "/v1/encryption/rotate-key")) as RotateAnswer;
        show(ctx, o.output, r, () => [
          ["", "PUBLIC KEY", "CREATED"],
          ["old", r.previousPublicKey, "-"],
          ["new", r.publicKey, r.keyCreatedAt],
        ]);
      }),
  );
  return cmd;
}
