// dnsperf as the proxy benchmark's other DNS load generator (bench/load-dnsperf.ts, --dns-load
// dnsperf): the arguments a load spec becomes, its output read back, and a real run against a
// resolver on loopback.
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import type { LoadSpec } from "../../bench/load.js";
import { dnsperfArgs, dnsperfLoad, findDnsperf, parseDnsperf } from "../../bench/load-dnsperf.js";

const LAB_DNS = { host: "10.99.0.53", bind: "10.99.0.2" };

const OUTPUT = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 10.99.0.53 -p 53 -a 10.99.0.2 -d q.txt -c 16 -q 16 -v
> NOERROR api.example.com A 0.000400
> NOERROR api.example.com A 0.000200
> SERVFAIL api.example.com A 0.000300
> NOERROR api.example.com A 0.001000
[Timeout] Query timed out: msg id 7
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         6
  Queries completed:    4 (66.67%)
  Queries lost:         2 (33.33%)

  Response codes:       NOERROR 3 (75.00%), SERVFAIL 1 (25.00%)
  Run time (s):         2.000000
  Queries per second:   2.000000
`;

describe("bench: dnsperf, the proxy benchmark's other DNS load generator", () => {
  test("a closed loop is -c N -q N (N sockets, N outstanding); an open loop adds its rate; from the load's source to its target", () => {
    const closed: LoadSpec = { kind: "dns", port: 53, connections: 16, durationMs: 3000, dns: LAB_DNS };
    assert.deepEqual(dnsperfArgs(closed, "/tmp/q.txt"), [
      ...["-s", "10.99.0.53", "-p", "53", "-a", "10.99.0.2", "-d", "/tmp/q.txt"],
      ...["-c", "16", "-q", "16", "-T", "1", "-t", "1", "-l", "3.000", "-v"],
    ]);
    const open: LoadSpec = { ...closed, connections: 8, rate: 2000 };
    assert.deepEqual(dnsperfArgs(open, "/tmp/q.txt"), [
      ...["-s", "10.99.0.53", "-p", "53", "-a", "10.99.0.2", "-d", "/tmp/q.txt"],
      ...["-c", "8", "-q", "8", "-T", "1", "-t", "1", "-l", "3.000", "-v", "-Q", "2000"],
    ]);
  });

  test("a load dnsperf cannot send is refused, saying why", () => {
    const base: LoadSpec = { kind: "dns", port: 53, connections: 16, durationMs: 1000, dns: LAB_DNS };
    const cases: [LoadSpec, RegExp][] = [
      [{ ...base, dns: { ...LAB_DNS, fresh: true } }, /no new socket per query/],
      [{ ...base, kind: "http" }, /DNS only, not http/],
      [{ ...base, ports: [15053, 15054] }, /one port/],
    ];
    for (const [spec, why] of cases)
      assert.throws(() => dnsperfArgs(spec, "/tmp/q.txt"), (e: Error) => /^Cannot run dnsperf for this load: /.test(e.message) && why.test(e.message)); // prettier-ignore
  });

  test("its output: NOERROR answers are the count and the latencies, other rcodes and lost queries errors", () => {
    const r = parseDnsperf(OUTPUT, 0.5);
    assert.deepEqual(r, {
      count: 3,
      perSecond: 2, // 3 answers in 2 s, rounded
      p50Ms: 0.4,
      p90Ms: 1,
      p99Ms: 1,
      errors: 3,
      maxQueue: 0,
      skipped: 0,
      loadgenCpuPct: 25, // 0.5 s of CPU over 2 s
    });
    assert.throws(() => parseDnsperf("> NOERROR api.example.com A 0.0004\n", 0), /^Error: Cannot read dnsperf's statistics/); // prettier-ignore
  });

  test(
    "a real run: dnsperf's answers counted from a resolver on loopback, its CPU read, its temp dir removed",
    { skip: findDnsperf() === undefined ? "needs dnsperf (apt-get install dnsperf)" : undefined },
    async () => {
      // prettier-ignore
      const bin = findDnsperf()?.bin ?? "";
      const sock = dgram.createSocket("udp4");
      let asked = 0;
      sock.on("message", (q, from) => {
        asked++;
        let i = 12;
        while (i < q.length && (q[i] ?? 0) > 0) i += (q[i] ?? 0) + 1;
        const head = Buffer.from([q[0] ?? 0, q[1] ?? 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
        const answer = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1]);
        sock.send(Buffer.concat([head, q.subarray(12, i + 5), answer]), from.port, from.address);
      });
      await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
      const load = dnsperfLoad(bin);
      try {
        const spec: LoadSpec = { kind: "dns", port: sock.address().port, connections: 2, durationMs: 300, dns: { host: "127.0.0.1" } }; // prettier-ignore
        const r = await load.call(spec);
        assert.ok(r.count > 0 && r.count <= asked, `answers ${r.count}, queries the resolver saw ${asked}`);
        assert.equal(r.errors, 0);
        assert.ok(r.loadgenCpuPct >= 0 && r.p99Ms > 0, JSON.stringify(r));
      } finally {
        load.close();
        sock.close();
      }
      assert.equal(existsSync(load.dir), false, "its temp dir removed");
    },
  );
});
