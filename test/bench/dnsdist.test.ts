// The proxy benchmark's reference DNS proxy (bench/proxy-dnsdist.ts): finding the binary, the
// configuration it is given, and a real dnsdist started with it, on loopback (a high port: no root
// needed) and, as root, in the bench's DNS lab beside Membrane's proxy.
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { startDnsLab } from "../../bench/proxy-dns-lab.js";
import {
  dnsdistConfig,
  findDnsdist,
  procNetAddress,
  startDnsdist,
  type DnsdistConfig,
} from "../../bench/proxy-dnsdist.js";
import { rootWith } from "../support/skip.js";

const LAB: DnsdistConfig = {
  listen: { host: "10.99.0.6", port: 15055 },
  upstream: { host: "10.99.0.53", port: 53 },
  source: "10.99.0.6",
  client: "10.99.0.5",
};

/** The Lua statements, comments left out. */
const statements = (lua: string): string[] =>
  lua.split("\n").filter((l) => l.trim() !== "" && !l.trim().startsWith("--"));

/** An A query for `name` with DNS id `id`. */
function query(id: number, name: string): Buffer {
  const labels = name.split(".").flatMap((l) => [l.length, ...Buffer.from(l, "latin1")]);
  return Buffer.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

/** A resolver on 127.0.0.1 that answers every query with one A record and counts what it was asked. */
async function countingResolver(): Promise<{ port: number; asked: string[]; close(): void }> {
  const sock = dgram.createSocket("udp4");
  const asked: string[] = [];
  sock.on("message", (q, from) => {
    let i = 12;
    const labels: string[] = [];
    while (i < q.length && (q[i] ?? 0) > 0) {
      labels.push(q.subarray(i + 1, i + 1 + (q[i] ?? 0)).toString("latin1"));
      i += (q[i] ?? 0) + 1;
    }
    asked.push(labels.join("."));
    const head = Buffer.from([q[0] ?? 0, q[1] ?? 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    const answer = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1]);
    sock.send(Buffer.concat([head, q.subarray(12, i + 5), answer]), from.port, from.address);
  });
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  return { port: sock.address().port, asked, close: () => sock.close() };
}

/** A port free on 127.0.0.1 for UDP now. */
async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Sends `q` to 127.0.0.1:port and resolves with the answer (rejects after 2 s). */
async function ask(port: number, q: Buffer): Promise<Buffer> {
  const s = dgram.createSocket("udp4");
  try {
    return await new Promise<Buffer>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`no answer from 127.0.0.1:${port}`)), 2000);
      s.once("message", (m) => {
        clearTimeout(t);
        res(m);
      });
      s.send(q, port, "127.0.0.1");
    });
  } finally {
    s.close();
  }
}

const noDnsdist = findDnsdist() === undefined ? "needs dnsdist (apt-get install dnsdist)" : undefined;

describe("bench: dnsdist, the proxy benchmark's reference DNS proxy", () => {
  test("a missing binary, or one that is not dnsdist, is no dnsdist; the first that is, is found with its version", () => {
    const dir = mkdtempSync(join(tmpdir(), "membrane-test-dnsdist-"));
    try {
      const fake = join(dir, "dnsdist");
      writeFileSync(fake, "#!/bin/sh\necho 'dnsdist 9.8.7 (Lua 5.1.4)'\necho 'Enabled features: none'\n");
      chmodSync(fake, 0o755);
      const failing = join(dir, "failing");
      writeFileSync(failing, "#!/bin/sh\necho 'dnsdist 1.0.0'\nexit 1\n");
      chmodSync(failing, 0o755);
      // /bin/echo answers --version with exit 0, but not as dnsdist.
      assert.equal(findDnsdist([join(dir, "absent"), failing, "/bin/echo"]), undefined);
      assert.deepEqual(findDnsdist([join(dir, "absent"), "/bin/echo", fake]), {
        bin: fake,
        version: "9.8.7",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the configuration: one listener, one backend set up by hand, no cache, console, web server or security poll", () => {
    assert.deepEqual(statements(dnsdistConfig(LAB)), [
      'setSecurityPollSuffix("")',
      'setACL({"10.99.0.5/32"})',
      'setLocal("10.99.0.6:15055", {reusePort=false})',
      "setMaxTCPClientThreads(1)",
      'newServer({address="10.99.0.53:53", source="10.99.0.6", sockets=1}):setUp()',
    ]);
  });

  test("a value that is not an address or a port is refused, naming the field (nothing else reaches the Lua)", () => {
    const cases: [string, DnsdistConfig, RegExp][] = [
      ["listen host", { ...LAB, listen: { host: '10.0.0.1"}) os.execute("x', port: 53 } }, /listen\.host/],
      ["listen port", { ...LAB, listen: { host: "10.0.0.1", port: 70000 } }, /listen\.port 70000/],
      ["upstream port", { ...LAB, upstream: { host: "10.0.0.1", port: 1.5 } }, /upstream\.port/],
      ["source", { ...LAB, source: "eth0" }, /source "eth0"/],
      ["client", { ...LAB, client: "10.0.0.0/8" }, /client "10\.0\.0\.0\/8"/],
    ];
    for (const [name, c, msg] of cases)
      assert.throws(() => dnsdistConfig(c), (e: Error) => msg.test(e.message) && /^Cannot configure dnsdist/.test(e.message), name); // prettier-ignore
  });

  test("/proc/net/udp's form of a local address", () => {
    assert.equal(procNetAddress({ host: "10.99.0.6", port: 15055 }), "0600630A:3ACF");
    assert.equal(procNetAddress({ host: "127.0.0.1", port: 53 }), "0100007F:0035");
  });

  test(
    "forwards every query to the resolver (no cache), answers with the client's id, runs unprivileged as root, leaves nothing",
    { skip: noDnsdist },
    async () => {
      // prettier-ignore
      const binary = findDnsdist();
      assert.ok(binary);
      const resolver = await countingResolver();
      const port = await freeUdpPort();
      const d = await startDnsdist({
        binary,
        config: {
          listen: { host: "127.0.0.1", port },
          upstream: { host: "127.0.0.1", port: resolver.port },
          source: "127.0.0.1",
          client: "127.0.0.1",
        },
      });
      let conf = "";
      try {
        const argv = readFileSync(`/proc/${d.pid}/cmdline`, "utf8").split("\0");
        conf = argv[argv.indexOf("-C") + 1] ?? "";
        assert.ok(existsSync(conf), `its configuration ${conf} exists while it runs`);
        for (const id of [0x1234, 0x4321, 0x0042]) {
          const a = await ask(port, query(id, "api.example.com"));
          assert.equal(a.readUInt16BE(0), id, "the client's id restored");
          assert.equal(a.readUInt16BE(6), 1, "one answer record");
        }
        // The same name three times: a cache would have asked once; no health check asked anything.
        assert.deepEqual(resolver.asked, ["api.example.com", "api.example.com", "api.example.com"]);
        const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${d.pid}/status`, "utf8"))?.[1];
        if (process.getuid?.() === 0) assert.notEqual(uid, "0", "dropped root after binding");
        assert.ok((d.threadCpu()["dnsdist/udpClie"]?.user ?? -1) >= 0, "its UDP thread is found by name");
      } finally {
        await d.stop();
        resolver.close();
      }
      assert.equal(existsSync(`/proc/${d.pid}`), false, "stopped");
      assert.equal(existsSync(conf), false, "its configuration removed");
    },
  );

  test("a dnsdist that does not start is an error naming where, with its own words, and leaves no temp dir", async () => {
    const dir = mkdtempSync(join(tmpdir(), "membrane-test-dnsdist-"));
    try {
      // Says where its configuration is, then fails as dnsdist does on a fatal error.
      const fake = join(dir, "dnsdist");
      writeFileSync(fake, '#!/bin/sh\necho "args: $*"\necho "Fatal error: boom" >&2\nexit 3\n');
      chmodSync(fake, 0o755);
      const config = { ...LAB, listen: { host: "127.0.0.1", port: 15055 } };
      let conf = "";
      await assert.rejects(startDnsdist({ binary: { bin: fake, version: "9" }, config }), (e: Error) => {
        assert.match(
          e.message,
          /^Cannot start dnsdist on 127\.0\.0\.1:15055: it exited \(3\)\..*Fatal error: boom/s,
        );
        conf = /-C (\S+)/.exec(e.message)?.[1] ?? "";
        return true;
      });
      assert.ok(conf.endsWith("dnsdist.conf"), `its output names the configuration: ${conf}`);
      assert.equal(existsSync(dirname(conf)), false, "its temp dir removed");
      const absent = { bin: join(dir, "absent"), version: "9" };
      await assert.rejects(startDnsdist({ binary: absent, config }), /^Error: Cannot start dnsdist on 127\.0\.0\.1:15055: spawn .*absent ENOENT/); // prettier-ignore
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test(
    "in the DNS lab (root): dnsdist beside Membrane's proxy, its load DNATed to it, answered",
    { skip: rootWith("the lab's network namespace", ["ip", "nft"]) ?? noDnsdist },
    async () => {
      // prettier-ignore
      const dnsdist = findDnsdist();
      assert.ok(dnsdist);
      const lab = await startDnsLab("r19t", { dnsdist });
      try {
        assert.deepEqual(
          lab.reused.map((t) => t.name),
          ["direct", "membrane", "membraneAsk", "dnsdist"],
        );
        const t = lab.reused.find((x) => x.name === "dnsdist");
        assert.ok(t && lab.dnsdist);
        assert.deepEqual(t.pids(), [lab.dnsdist.pid]);
        const r = await t.load.call({
          kind: "dns",
          port: t.port,
          dns: t.dns,
          connections: 4,
          durationMs: 300,
        });
        assert.ok(r.count > 0, `answers through dnsdist: ${JSON.stringify(r)}`);
        assert.equal(r.errors, 0);
      } finally {
        await lab.close();
      }
    },
  );
});
