/** `membrane cluster etcd-setup`: etcd users and roles for least privilege (src/cluster/etcd-setup.ts). */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { Etcd3 } from "etcd3";
import { ADMIN_USER, etcdSetup, nodeUser } from "../../cluster/etcd-setup.js";
import { validateNodeName } from "../../cluster/keys.js";
import { parseClusterStore } from "../../cluster/options.js";
import { MembraneError } from "../../errors.js";
import type { CliContext } from "../context.js";

const read = (file: string, flag: string): string => {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot read ${flag} ${JSON.stringify(file)}: ${(e as Error).message}`,
    );
  }
};

export function clusterCommand(ctx: CliContext): Command {
  const cluster = new Command("cluster").description("cluster mode administration (etcd)");
  cluster.addCommand(
    new Command("etcd-setup")
      .description(
        "create etcd roles and users so that each node writes only its own keys (node role), and an admin role for `membrane apply`",
      )
      .requiredOption("--cluster-store <urls>", "etcd client URLs (etcd://HOST:PORT[,...])")
      .option("--node <name...>", "create role and user membrane-node-<name> for these nodes")
      .option(
        "--admin",
        `create role and user ${ADMIN_USER} (writes policies, namespaces, Services with their addresses, EndpointSlices)`,
      )
      .requiredOption(
        "--out-dir <dir>",
        "write each new user's generated password to <dir>/<user>.password (mode 0600)",
      )
      .option(
        "--enable-auth",
        "create the root user if missing (password in <out-dir>/root.password) and turn auth on",
      )
      .option("--etcd-ca <file>", "CA certificate (PEM) of etcd's TLS certificate")
      .option("--etcd-cert <file>", "client certificate (PEM) of etcd's root user")
      .option("--etcd-key <file>", "client key (PEM)")
      .option("--etcd-username <user>", "etcd's root user, when auth is on", "root")
      .option("--etcd-password-file <file>", "file holding the root user's password, when auth is on")
      .addHelpText(
        "after",
        `
With TLS client certificates (etcd --client-cert-auth), a node's certificate CN must be its user name,
membrane-node-<name>. The node role reads membrane/ and writes only cluster/nodes/<name>,
cluster/podcidrs/<name>, cluster/status/<name>, cluster/identities/<name>/, cluster/ipcache/<name>/ and
cluster/lb/gateways/<name>/ (its Gateways' own addresses). The admin role writes cluster/policies/,
cluster/namespaces/, cluster/services/ and cluster/lb/services/, lb/slices/, lb/alloc/: Services and
EndpointSlices are applied with it, never by a node, from the service ranges the agents publish:
  $ membrane apply -f examples/services/loadbalancer.yaml --cluster-store etcd://10.0.0.5:2379 \\
      --etcd-username ${ADMIN_USER} --etcd-password-file /root/membrane-etcd/${ADMIN_USER}.password
Roles made by an older etcd-setup lack the cluster/lb/ grants: add them with etcdctl role
grant-permission (the errors say which), as running etcd-setup again for a user sets a new password.

Example:
  $ membrane cluster etcd-setup --cluster-store etcd://10.0.0.5:2379 --node n1 n2 --admin \\
      --out-dir /root/membrane-etcd --enable-auth
`,
      )
      .action(async (o: Record<string, string | string[] | boolean | undefined>) => {
        const s = (k: string): string | undefined => (typeof o[k] === "string" ? o[k] : undefined);
        const nodes = ((o["node"] as string[] | undefined) ?? []).map((n) => validateNodeName(n, "--node"));
        if (nodes.length === 0 && !o["admin"] && !o["enableAuth"])
          throw new MembraneError("CLI_USAGE", "Cannot set up etcd: give --node, --admin or --enable-auth");
        const tls = s("etcdCa") !== undefined;
        const hosts = parseClusterStore(s("clusterStore") ?? "", tls);
        const outDir = s("outDir") as string;
        mkdirSync(outDir, { recursive: true, mode: 0o700 });
        const secret = (user: string): string => {
          const pw = randomBytes(24).toString("base64url");
          const file = join(outDir, `${user}.password`);
          try {
            // "wx": a file (or symbolic link) already there is never written through, nor left with its mode.
            writeFileSync(file, pw + "\n", { mode: 0o600, flag: "wx" });
          } catch (e) {
            throw new MembraneError("CLI_USAGE", `Cannot write ${file}: ${(e as Error).message}`, {
              hint: "give an --out-dir that holds no password file of these users (move the old ones away first)",
            });
          }
          return pw;
        };
        const client = new Etcd3({
          hosts,
          ...(tls
            ? {
                credentials: {
                  rootCertificate: Buffer.from(read(s("etcdCa") as string, "--etcd-ca")),
                  ...(s("etcdCert")
                    ? { certChain: Buffer.from(read(s("etcdCert") as string, "--etcd-cert")) }
                    : {}),
                  ...(s("etcdKey")
                    ? { privateKey: Buffer.from(read(s("etcdKey") as string, "--etcd-key")) }
                    : {}),
                },
              }
            : {}),
          ...(s("etcdPasswordFile")
            ? {
                auth: {
                  username: s("etcdUsername") ?? "root",
                  password: read(s("etcdPasswordFile") as string, "--etcd-password-file").trim(),
                },
              }
            : {}),
        });
        try {
          const done = await etcdSetup(client, {
            nodes: nodes.map((name) => ({ name, password: secret(nodeUser(name)) })),
            ...(o["admin"] ? { admin: { password: secret(ADMIN_USER) } } : {}),
            ...(o["enableAuth"] ? { enableAuth: { rootPassword: secret("root") } } : {}),
          });
          for (const d of done)
            ctx.out(d.includes(" ") ? `${d}\n` : `user ${d}: password in ${join(outDir, `${d}.password`)}\n`);
        } finally {
          client.close();
        }
      }),
  );
  return cluster;
}
