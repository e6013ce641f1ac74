/**
 * Hubble's source_service / destination_service from the LB table's log (no root: NFLOG events
 * built from real header bytes). The kernel side (the log rule before the DNAT, real packets to a
 * ClusterIP) is test/lb/lb-agent.test.ts.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SERVICE_LOG_PREFIX } from "../../src/abi/log-prefix.js";
import { FlowEnricher, type FlowLookup } from "../../src/observe/enrich.js";
import { fromJson } from "@bufbuild/protobuf";
import { compileFilter } from "../../src/observe/filter.js";
import { observeRequestOf } from "../../src/observe/hubble/request.js";
import { hubbleSchema } from "../../src/observe/hubble/schema.js";
import { filterFromFlags } from "../../src/observe/flags.js";
import type { Flow } from "../../src/observe/flow.js";
import type { NflogEvent } from "../../src/observe/nflog-msg.js";
import { ipv4, tcpHeader, udpHeader } from "./fixtures.js";
import { LOOKUP } from "./fixtures.js";

const WEB = { name: "web", namespace: "default" };
const DNS = { name: "kube-dns", namespace: "kube-system" };
const asked: string[] = [];
const lookup: FlowLookup = {
  ...LOOKUP,
  serviceAt: (ip, proto, port, nodePort) => {
    asked.push(`${ip} ${proto} ${port}${nodePort ? " nodePort" : ""}`);
    if (nodePort === true) return proto === 6 && port === 30080 ? WEB : undefined;
    if (ip === "10.96.0.50" && proto === 6 && port === 80) return WEB;
    if (ip === "10.96.0.10" && proto === 17 && port === 53) return DNS;
    return undefined;
  },
};

const ev = (prefix: string, packet: Buffer, timestampMs = 1_000_000): NflogEvent => ({
  prefix,
  packet,
  timestampMs,
});
const CLIENT = "10.0.0.13";
const BACKEND = "10.0.0.12";
const syn = (src: string, sport: number, dst: string, dport: number): Buffer =>
  ipv4(src, dst, 6, tcpHeader(sport, dport, 0x02));

describe("flows name the Service the client dialled (Hubble's destination_service)", () => {
  test("the verdicts after the DNAT name the ClusterIP's Service; a direct connection does not", () => {
    const e = new FlowEnricher({ lookup });
    assert.equal(e.enrich(ev(SERVICE_LOG_PREFIX.frontend, syn(CLIENT, 40000, "10.96.0.50", 80))), undefined);
    assert.equal(e.stats.foreign, 0, "the LB's log is Membrane's, not foreign");
    const egress = e.enrich(ev("mbr:a:e13:out:r7", syn(CLIENT, 40000, BACKEND, 8080))) as Flow;
    const ingress = e.enrich(ev("mbr:a:e12:in:r7", syn(CLIENT, 40000, BACKEND, 8080), 1_000_001)) as Flow;
    assert.deepEqual(egress.destination_service, WEB);
    assert.deepEqual(ingress.destination_service, WEB);
    assert.equal(egress.source_service, undefined);
    assert.equal(egress.IP?.destination, BACKEND, "the address stays the backend's (after the DNAT)");
    // Hubble's JSON order: right after event_type.
    const keys = Object.keys(egress);
    assert.equal(keys.indexOf("destination_service"), keys.indexOf("event_type") + 1);
    const other = e.enrich(ev("mbr:a:e13:out:r7", syn(CLIENT, 40001, BACKEND, 8080))) as Flow;
    assert.equal(other.destination_service, undefined, "another client port dialled the pod directly");
  });

  test("the frontend answers only for its packet's moment: later, the same port is not a service's", () => {
    const e = new FlowEnricher({ lookup });
    e.enrich(ev(SERVICE_LOG_PREFIX.frontend, syn(CLIENT, 40002, "10.96.0.50", 80), 5_000));
    const late = e.enrich(ev("mbr:a:e13:out:r7", syn(CLIENT, 40002, BACKEND, 8080), 7_000)) as Flow;
    assert.equal(late.destination_service, undefined);
  });

  test("a NodePort is looked up as one; UDP too; a reply from a ClusterIP names source_service", () => {
    asked.length = 0;
    const e = new FlowEnricher({ lookup });
    e.enrich(ev(SERVICE_LOG_PREFIX.nodePort, syn(CLIENT, 40003, "10.210.0.1", 30080)));
    const np = e.enrich(ev("mbr:d:e12:in:def", syn(CLIENT, 40003, BACKEND, 8080))) as Flow;
    assert.deepEqual(np.destination_service, WEB);
    assert.ok(asked.includes("10.210.0.1 6 30080 nodePort"), asked.join("; "));
    e.enrich(ev(SERVICE_LOG_PREFIX.frontend, ipv4(CLIENT, "10.96.0.10", 17, udpHeader(5353, 53))));
    const dns = e.enrich(ev("mbr:d:e13:out:def", ipv4(CLIENT, BACKEND, 17, udpHeader(5353, 1053)))) as Flow;
    assert.deepEqual(dns.destination_service, DNS);
    const reply = e.enrich(ev("mbr:d:e13:in:inv", syn("10.96.0.50", 80, CLIENT, 40004))) as Flow;
    assert.deepEqual(reply.source_service, WEB);
    assert.equal(reply.destination_service, undefined);
  });

  test("hostile LB log events (cut short, not IPv4, no ports) are counted foreign and name nothing", () => {
    const e = new FlowEnricher({ lookup });
    const full = syn(CLIENT, 40005, "10.96.0.50", 80);
    for (const p of [
      Buffer.alloc(0),
      full.subarray(0, 19),
      full.subarray(0, 22),
      Buffer.from([0x60, ...full.subarray(1)]),
      ipv4(CLIENT, "10.96.0.50", 1, [8, 0, 0, 0]),
    ])
      // prettier-ignore
      assert.equal(e.enrich(ev(SERVICE_LOG_PREFIX.frontend, p)), undefined);
    assert.equal(e.enrich(ev("mbr:s:x", full)), undefined);
    assert.equal(e.stats.foreign, 6);
    const f = e.enrich(ev("mbr:a:e13:out:r7", syn(CLIENT, 40005, BACKEND, 8080))) as Flow;
    assert.equal(f.destination_service, undefined);
  });

  test("--to-service / --from-service / --service select by namespace/name-prefix, as pods", () => {
    const flows: Flow[] = [
      { destination_service: WEB } as Flow,
      { source_service: WEB } as Flow,
      { destination_service: DNS } as Flow,
      {} as Flow,
    ];
    const pick = (flags: Parameters<typeof filterFromFlags>[0]): number[] => {
      const f = compileFilter(filterFromFlags(flags).filter);
      return flows.flatMap((x, i) => (f(x) ? [i] : []));
    };
    assert.deepEqual(pick({ toService: ["default/web"] }), [0]);
    assert.deepEqual(pick({ toService: ["default/w"] }), [0], "a name prefix");
    assert.deepEqual(pick({ toService: ["kube-system/"] }), [2], "a whole namespace");
    assert.deepEqual(pick({ toService: ["web"] }), [0], "any namespace");
    assert.deepEqual(pick({ fromService: ["default/web"] }), [1]);
    assert.deepEqual(pick({ service: ["default/web"] }), [0, 1]);
    assert.deepEqual(
      pick({ toService: ["kube-dns"], namespace: ["default"] }),
      [],
      "qualified by --namespace",
    );
  });

  test("Hubble's GetFlows carries the service filters (FlowFilter fields 16 and 17), not refused", () => {
    const m = fromJson(hubbleSchema().GetFlowsRequest, {
      whitelist: [{ destination_service: ["default/web"] }],
      blacklist: [{ source_service: ["kube-system/"] }],
    });
    const req = observeRequestOf(m);
    assert.deepEqual(req.filter.allowlist, [{ destination_service: ["default/web"] }]);
    assert.deepEqual(req.filter.denylist, [{ source_service: ["kube-system/"] }]);
  });
});
