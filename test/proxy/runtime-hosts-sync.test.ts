/**
 * The proxy's copy of the ipcache's exact addresses costs what changes
 * (issue 10): a real ProxySupervisor and proxy process (in a namespace of
 * the test's own), a real HostTable; what was sent is read from the
 * supervisor's counters, what the proxy holds from its answers.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import { HostTable } from "../../src/ipcache/hosts.js";
import type { ProxyPush, ProxySupervisor } from "../../src/proxy/runtime/supervisor.js";
import { rootSkipReason, until, withSupervisor } from "./supervisor-harness.js";

const skip = rootSkipReason();
const PREFIX_ID = 16777300;
const WORLD = 2;

let version = 0;
const snap = (hosts: HostTable | undefined, extra: Partial<ProxyPush> = {}): ProxyPush => ({
  version: ++version,
  ipcache: [{ prefix: "10.1.0.0/16", identity: PREFIX_ID }],
  endpoints: [{ name: "default/local", id: 1, identity: 400, ipv4: "10.0.0.5" }],
  l7: [],
  ...(hosts ? { hosts } : {}),
  ...extra,
});

async function identities(sup: ProxySupervisor, ips: string[]): Promise<Record<string, number | undefined>> {
  const out: Record<string, number | undefined> = {};
  for (const ip of ips) out[ip] = await sup.identityOf(ip);
  return out;
}

const ipOf = (i: number): string => `10.2.${(i >> 8) & 255}.${i & 255}`;

describe("proxy host table: a full table once, then deltas (needs root)", { skip }, () => {
  test("a new process gets the whole table; a push sends only what changed, nothing when nothing did", () =>
    withSupervisor(async (sup) => {
      const hosts = new HostTable();
      hosts.set("10.1.0.7", 300);
      hosts.set("10.1.0.8", 301);
      hosts.set("fd00::7", 302);
      hosts.set("10.0.0.5", 999); // a local endpoint's address: the endpoint wins
      await sup.push(snap(hosts));
      assert.deepEqual(
        { ...sup.stats },
        { snapshots: 1, hostsFull: 1, hostsDeltas: 0, hostsRefused: 0, hostEntries: 4, hostMessages: 1 },
      );
      assert.deepEqual(
        await identities(sup, ["10.1.0.7", "10.1.0.8", "fd00:0::0007", "10.0.0.5", "10.1.9.9", "192.0.2.1"]),
        {
          "10.1.0.7": 300,
          "10.1.0.8": 301,
          "fd00:0::0007": 302,
          "10.0.0.5": 400,
          "10.1.9.9": PREFIX_ID,
          "192.0.2.1": WORLD,
        },
      );

      hosts.set("10.1.0.7", 310);
      hosts.delete("10.1.0.8");
      hosts.set("10.3.0.1", 320);
      await sup.push(snap(hosts));
      assert.deepEqual(
        { ...sup.stats },
        { snapshots: 1, hostsFull: 1, hostsDeltas: 1, hostsRefused: 0, hostEntries: 7, hostMessages: 2 },
        "one delta of three entries, and no snapshot (its content did not change)",
      );
      assert.deepEqual(await identities(sup, ["10.1.0.7", "10.1.0.8", "10.3.0.1"]), {
        "10.1.0.7": 310,
        "10.1.0.8": PREFIX_ID, // gone from the hosts: its prefix names it again
        "10.3.0.1": 320,
      });

      await sup.push(snap(hosts));
      assert.equal(sup.stats.hostMessages, 2, "nothing changed: nothing sent");
      assert.equal(sup.stats.snapshots, 1);

      await sup.push(snap(hosts, { ipcache: [] }));
      assert.deepEqual([sup.stats.snapshots, sup.stats.hostMessages], [2, 2], "only the snapshot changed");
      assert.equal(await sup.identityOf("10.1.9.9"), WORLD);
      assert.equal(await sup.identityOf("10.1.0.7"), 310);
    }));

  test("the same arrays as the last push are not even serialized again; their hosts still go", () =>
    withSupervisor(async (sup) => {
      const hosts = new HostTable();
      hosts.set("10.1.0.7", 300);
      let serialized = 0;
      const ep = { name: "default/local", id: 1, identity: 400, ipv4: "10.0.0.5" };
      const counted = { ...ep, toJSON: () => (serialized++, ep) };
      const first = snap(hosts, { endpoints: [counted] });
      await sup.push(first);
      const once = serialized; // hashed, and sent to the process
      assert.ok(once >= 1);
      assert.equal(sup.stats.snapshots, 1);
      hosts.set("10.1.0.8", 301);
      await sup.push({ ...first, version: ++version });
      assert.deepEqual([serialized, sup.stats.snapshots, sup.stats.hostsDeltas], [once, 1, 1]);
      assert.equal(await sup.identityOf("10.1.0.8"), 301);
      // New arrays of the same content: hashed (once), and still not sent.
      await sup.push(snap(hosts, { endpoints: [counted] }));
      assert.deepEqual([serialized, sup.stats.snapshots], [once + 1, 1]);
    }));

  test("a delta from a revision the process does not hold is refused, and the whole table follows", () =>
    withSupervisor(async (sup) => {
      const hosts = new HostTable();
      hosts.set("10.1.0.7", 300);
      await sup.push(snap(hosts));
      // The process ends up at another revision than the supervisor believes (as after an ack lost to a timeout).
      const send = (sup as unknown as { send(m: unknown): void }).send.bind(sup);
      send({
        type: "hosts",
        from: hosts.revision,
        to: hosts.revision + 100,
        set: [["10.9.9.9", 777]],
        del: [],
      });
      await until("the diverging delta applied", async () => (await sup.identityOf("10.9.9.9")) === 777);

      hosts.set("10.1.0.8", 301);
      await sup.push(snap(hosts));
      assert.deepEqual(
        [sup.stats.hostsDeltas, sup.stats.hostsRefused, sup.stats.hostsFull],
        [1, 1, 2],
        "the delta was refused, then the whole table sent",
      );
      assert.deepEqual(await identities(sup, ["10.1.0.7", "10.1.0.8", "10.9.9.9"]), {
        "10.1.0.7": 300,
        "10.1.0.8": 301,
        "10.9.9.9": WORLD,
      });
    }));

  test("a table the process refuses as malformed: refused at once, naming the entry; logged once, not sent again; the old table stays", async () => {
    const lines: { msg?: string; reason?: string }[] = [];
    const logger = pino({ level: "error" }, { write: (l: string) => lines.push(JSON.parse(l) as never) });
    await withSupervisor(async (sup) => {
      const hosts = new HostTable();
      hosts.set("10.1.0.7", 300);
      await sup.push(snap(hosts));
      // What the agent's table should never hold, and the proxy must not take: an address it cannot key.
      hosts.set("10.1.0.8", 301);
      hosts.set("10.1.0.256", 302);
      const refused =
        /Cannot run the L7 proxy: it refused the ipcache's addresses: part 0 of 1: set\[\d\] address "10\.1\.0\.256" is not a plain IPv4\/IPv6 address/;
      await assert.rejects(sup.push(snap(hosts)), { code: "PROXY_FAILED", message: refused });
      assert.deepEqual(
        [sup.stats.hostsDeltas, sup.stats.hostsRefused, sup.stats.hostsFull],
        [1, 1, 2],
        "the delta was refused for its content, then the whole table, once",
      );
      const sent = sup.stats.hostMessages;
      await assert.rejects(sup.push(snap(hosts)), { code: "PROXY_FAILED", message: refused });
      assert.equal(sup.stats.hostMessages, sent, "the same content was sent again");
      assert.deepEqual(await identities(sup, ["10.1.0.7", "10.1.0.8"]), {
        "10.1.0.7": 300,
        "10.1.0.8": PREFIX_ID,
      });
      assert.deepEqual(
        lines.filter((l) => /refused the ipcache's addresses/.test(l.msg ?? "")).map((l) => l.reason),
        [lines.find((l) => l.reason !== undefined)?.reason],
        "logged once",
      );
      // The table mended: sent again, and taken.
      hosts.delete("10.1.0.256");
      await sup.push(snap(hosts));
      assert.deepEqual(await identities(sup, ["10.1.0.7", "10.1.0.8"]), { "10.1.0.7": 300, "10.1.0.8": 301 });
    }, logger);
  });

  test("a journal that no longer reaches the last revision sent: the whole table, though one address changed", () =>
    withSupervisor(async (sup) => {
      const hosts = new HostTable();
      hosts.set("10.1.0.7", 300);
      await sup.push(snap(hosts));
      for (let i = 0; i < 35_000; i++) {
        hosts.set("10.2.0.1", 500);
        hosts.delete("10.2.0.1");
      }
      hosts.set("10.2.0.2", 501);
      assert.equal(hosts.changesSince(1), undefined, "the journal was trimmed past revision 1");
      await sup.push(snap(hosts));
      assert.deepEqual([sup.stats.hostsFull, sup.stats.hostsDeltas, sup.stats.hostEntries], [2, 0, 3]);
      assert.deepEqual(await identities(sup, ["10.1.0.7", "10.2.0.1", "10.2.0.2"]), {
        "10.1.0.7": 300,
        "10.2.0.1": WORLD,
        "10.2.0.2": 501,
      });
    }));

  test("a restarted proxy process gets the whole table (and the deltas after it)", () =>
    withSupervisor(async (sup) => {
      const hosts = new HostTable();
      for (let i = 0; i < 100; i++) hosts.set(ipOf(i), 1000 + i);
      await sup.push(snap(hosts));
      const pid = sup.pid;
      assert.ok(pid);
      process.kill(pid, "SIGKILL");
      await until(
        "the restarted process's table and snapshot",
        () => sup.running && sup.pid !== pid && sup.stats.snapshots === 2,
      );
      assert.deepEqual([sup.stats.hostsFull, sup.stats.hostEntries], [2, 200]);
      assert.equal(await sup.identityOf(ipOf(42)), 1042);
      hosts.set(ipOf(42), 2042);
      await sup.push(snap(hosts));
      assert.deepEqual([sup.stats.hostsDeltas, sup.stats.hostEntries], [1, 201]);
      assert.equal(await sup.identityOf(ipOf(42)), 2042);
    }));

  test("50,000 addresses go in parts of 10,000; then one change sends one entry", () =>
    withSupervisor(async (sup) => {
      const hosts = new HostTable();
      for (let i = 0; i < 50_000; i++)
        hosts.set(`10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, 256 + (i % 10_000));
      await sup.push(snap(hosts));
      assert.deepEqual([sup.stats.hostsFull, sup.stats.hostEntries, sup.stats.hostMessages], [1, 50_000, 5]);
      assert.equal(await sup.identityOf("10.100.195.79"), 256 + (49_999 % 10_000));

      hosts.set("10.250.0.1", 4242);
      await sup.push(snap(hosts));
      assert.deepEqual(
        [
          sup.stats.hostsFull,
          sup.stats.hostsDeltas,
          sup.stats.hostEntries,
          sup.stats.hostMessages,
          sup.stats.snapshots,
        ],
        [1, 1, 50_001, 6, 1],
      );
      assert.equal(await sup.identityOf("10.250.0.1"), 4242);
      hosts.delete("10.100.0.0");
      await sup.push(snap(hosts));
      assert.equal(sup.stats.hostEntries, 50_002);
      assert.equal(await sup.identityOf("10.100.0.0"), WORLD);
    }));

  test("an agent without a hosts table empties the process's (the snapshot's ipcache is all of it again)", () =>
    withSupervisor(async (sup) => {
      const hosts = new HostTable();
      hosts.set("10.1.0.7", 300);
      await sup.push(snap(hosts));
      await sup.push(snap(undefined));
      assert.equal(await sup.identityOf("10.1.0.7"), PREFIX_ID);
      assert.equal(sup.stats.hostsFull, 2);
      await sup.push(snap(undefined));
      assert.equal(sup.stats.hostsFull, 2, "nothing left to empty");
    }));
});
