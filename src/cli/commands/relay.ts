/**
 * `membrane relay`: one Hubble Observer API for the whole cluster (src/relay/).
 *
 *   flags --relayParamsOf--> startRelay --> serves until SIGINT/SIGTERM
 */
import { readFileSync } from "node:fs";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Command } from "commander";
import pino from "pino";
import { MembraneError } from "../../errors.js";
import { hubbleListenOf } from "../../agent/hubble.js";
import { parseClusterStore } from "../../cluster/options.js";
import { validateNodeName } from "../../cluster/keys.js";
import { DEFAULT_RELAY_SOCKET, startRelay, type RelayParams } from "../../relay/relay.js";
import type { PeerAddress } from "../../relay/peer.js";
import type { CliContext } from "../context.js";

type Flags = Record<string, string | string[] | undefined>;

const usage = (msg: string, hint: string): MembraneError => new MembraneError("CLI_USAGE", msg, { hint });

function int(o: Flags, k: string, flag: string, min: number, max: number): number {
  const v = o[k];
  const n = Number(v);
  if (typeof v !== "string" || !Number.isInteger(n) || n < min || n > max)
    throw usage(
      `Cannot start the relay: ${flag} ${JSON.stringify(v)} is not an integer in ${min}..${max}`,
      `Give ${flag} a whole number between ${min} and ${max}.`,
    );
  return n;
}

function peerOf(spec: string): PeerAddress {
  const eq = spec.indexOf("=");
  const name = spec.slice(0, eq);
  const target = spec.slice(eq + 1);
  if (eq < 1 || !(target.startsWith("unix:/") || /^[A-Za-z0-9.[\]:-]+:\d{1,5}$/.test(target)))
    throw usage(
      `Cannot start the relay: --peer ${JSON.stringify(spec)} is not NAME=unix:/path or NAME=host:port`,
      "e.g. --peer n1=unix:/run/membrane/hubble.sock",
    );
  validateNodeName(name, "--peer");
  return { name, target, tls: !target.startsWith("unix:") };
}

const str = (o: Flags, k: string): string | undefined => (typeof o[k] === "string" ? o[k] : undefined);

/** The relay's parameters from its flags (errors name the flag). */
export function relayParamsOf(o: Flags, version: string): Omit<RelayParams, "logger"> {
  const store = str(o, "clusterStore");
  const peers = ((o["peer"] as string[] | undefined) ?? []).map(peerOf);
  if ((store === undefined) === (peers.length === 0))
    throw usage(
      "Cannot start the relay: give --cluster-store (find the nodes in etcd) or --peer, not both or neither",
      "e.g. membrane relay --cluster-store etcd://10.0.0.5:2379",
    );
  const ca = str(o, "etcdCa");
  const cert = str(o, "etcdCert");
  const key = str(o, "etcdKey");
  if ((cert === undefined) !== (key === undefined) || (cert !== undefined && ca === undefined))
    throw usage(
      "Cannot start the relay: --etcd-cert and --etcd-key go together, with --etcd-ca",
      "Give all three, or only --etcd-ca.",
    );
  const read = (f: string, flag: string): Buffer => {
    try {
      return readFileSync(f);
    } catch (e) {
      throw usage(`Cannot start the relay: ${flag} ${f}: ${(e as Error).message}`, "Check the file path.");
    }
  };
  const peerCa = str(o, "peerTlsCa");
  if (peerCa === undefined && (str(o, "peerTlsCert") ?? str(o, "peerTlsKey")) !== undefined)
    throw usage(
      "Cannot start the relay: --peer-tls-cert/--peer-tls-key need --peer-tls-ca",
      "Give the CA of the agents' certificates with --peer-tls-ca.",
    );
  if (peerCa === undefined && peers.some((p) => p.tls))
    throw usage(
      "Cannot start the relay: a --peer host:port needs --peer-tls-ca",
      "Agents serve TCP only with TLS.",
    );
  const listen = hubbleListenOf(str(o, "listen"), str(o, "tlsCert"), str(o, "tlsKey"), str(o, "tlsClientCa"));
  return {
    nodes:
      store !== undefined
        ? {
            store: {
              endpoints: parseClusterStore(store, ca !== undefined),
              ...(ca !== undefined
                ? {
                    tls: {
                      ca: read(ca, "--etcd-ca"),
                      ...(cert !== undefined && key !== undefined
                        ? { cert: read(cert, "--etcd-cert"), key: read(key, "--etcd-key") }
                        : {}),
                    },
                  }
                : {}),
            },
          }
        : { peers },
    ...(peerCa !== undefined
      ? {
          peerTls: {
            caFile: peerCa,
            ...(str(o, "peerTlsCert") !== undefined ? { certFile: str(o, "peerTlsCert") as string } : {}),
            ...(str(o, "peerTlsKey") !== undefined ? { keyFile: str(o, "peerTlsKey") as string } : {}),
            ...(str(o, "peerTlsServerName") !== undefined
              ? { serverName: str(o, "peerTlsServerName") as string }
              : {}),
          },
        }
      : {}),
    socketPath: str(o, "socket") ?? DEFAULT_RELAY_SOCKET,
    ...(listen !== undefined ? { listen } : {}),
    merge: {
      windowMs: int(o, "sortWindow", "--sort-window", 0, 60_000),
      maxBuffered: int(o, "sortBuffer", "--sort-buffer", 1, 10_000_000),
    },
    healthMs: int(o, "healthInterval", "--health-interval", 100, 600_000),
    version,
  };
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export function relayCommand(ctx: CliContext): Command {
  return new Command("relay")
    .description(
      "serve one Hubble Observer API for the whole cluster: every node's flows merged in time order",
    )
    .option("--cluster-store <urls>", "etcd client URLs (etcd://HOST:PORT,...): where the nodes are listed")
    .option("--etcd-ca <file>", "CA certificate (PEM) of etcd's TLS certificate")
    .option("--etcd-cert <file>", "client certificate (PEM) for etcd")
    .option("--etcd-key <file>", "client key (PEM) for etcd")
    .option(
      "--peer <name=addr>",
      "a node's Observer API instead of the cluster store: n1=unix:/path or n1=host:port (repeatable)",
      collect,
    )
    .option("--peer-tls-ca <file>", "CA of the agents' --hubble-listen certificates (then TCP+TLS is used)")
    .option("--peer-tls-cert <file>", "the relay's client certificate for the agents (mutual TLS)")
    .option("--peer-tls-key <file>", "the relay's client key for the agents (mutual TLS)")
    .option("--peer-tls-server-name <name>", "the name the agents' certificates carry")
    .option("--socket <path>", "the relay's unix socket (mode 0660)", DEFAULT_RELAY_SOCKET)
    .option("--listen <host:port>", "also serve on TCP, with TLS (needs --tls-cert and --tls-key)")
    .option("--tls-cert <file>", "certificate (PEM) of --listen")
    .option("--tls-key <file>", "private key (PEM) of --listen")
    .option("--tls-client-ca <file>", "require client certificates signed by this CA (mutual TLS)")
    .option("--sort-window <ms>", "how long a flow waits for older flows of other nodes", "200")
    .option(
      "--sort-buffer <n>",
      "most flows held for sorting (beyond: the oldest goes early, counted)",
      "10000",
    )
    .option("--health-interval <ms>", "how often each node's API is checked", "1000")
    .option("--log-level <level>", "debug | info | warn | error", "info")
    .addHelpText(
      "after",
      `
The relay reads where each agent serves Hubble's API from its node record in the cluster store:
the agent's unix socket when on this host, its --hubble-listen address when --peer-tls-ca is given.
Nodes that do not answer are named in the stream (node_status events) and in ServerStatus.
Flows that arrive later than --sort-window after newer ones are passed on out of order and counted
(logged every minute and when the relay stops).

Examples:
  $ membrane relay --cluster-store etcd://10.0.0.5:2379
  $ membrane relay --peer n1=unix:/run/membrane/hubble.sock --socket /tmp/relay.sock
  $ membrane observe --server relay --follow
`,
    )
    .action(async (o: Flags) => {
      const params = relayParamsOf(o, ctx.version);
      const logger = pino(
        { level: str(o, "logLevel") ?? "info", base: { component: "relay" } },
        pino.destination(2),
      );
      if (params.socketPath !== undefined)
        mkdirSync(dirname(params.socketPath), { recursive: true, mode: 0o755 });
      const relay = await startRelay({ ...params, logger });
      const report = (): void => logger.info({ merge: relay.stats() }, "relay merge counters");
      const timer = setInterval(report, 60_000);
      timer.unref();
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
          clearInterval(timer);
          report();
          void relay.stop().finally(resolve);
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
      });
    });
}
