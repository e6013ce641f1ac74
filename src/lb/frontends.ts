/**
 * Which Service answers on an address and port: the flow observer's question for Hubble's
 * source_service / destination_service. Pure: built from the Services applied.
 *
 *   LbService[] --serviceFrontends--> ServiceFrontends
 *     .at(ip, proto, port)        ClusterIP or LoadBalancer address . protocol . port -> {name, namespace}
 *     .atNodePort(proto, port)    a NodePort (on any of the node's addresses)          -> {name, namespace}
 *
 * Keys are numbers (protocol << 16 | port) under the address, so a per-flow lookup makes no string.
 */
import { LB_PROTO } from "../datapath/lb-types.js";
import type { LbService } from "./types.js";

/** Hubble's Service message: the name and namespace of a Kubernetes Service. */
export interface ServiceRef {
  readonly name: string;
  readonly namespace: string;
}

export interface ServiceFrontends {
  at(ip: string, proto: number, port: number): ServiceRef | undefined;
  atNodePort(proto: number, port: number): ServiceRef | undefined;
}

const key = (proto: number, port: number): number => proto * 65536 + port;

export function serviceFrontends(services: Iterable<LbService>): ServiceFrontends {
  const byIp = new Map<string, Map<number, ServiceRef>>();
  const nodePorts = new Map<number, ServiceRef>();
  for (const s of services) {
    const ref: ServiceRef = { name: s.name, namespace: s.namespace };
    const ips = [...(s.clusterIPs ?? [s.clusterIP]), ...(s.loadBalancerIPs ?? [s.loadBalancerIP])].filter((ip): ip is string => !!ip && ip !== "None"); // prettier-ignore
    for (const p of s.ports) {
      const k = key(LB_PROTO[p.protocol], p.port);
      for (const ip of ips) {
        let m = byIp.get(ip);
        if (m === undefined) byIp.set(ip, (m = new Map()));
        m.set(k, ref);
      }
      if (p.nodePort !== undefined) nodePorts.set(key(LB_PROTO[p.protocol], p.nodePort), ref);
    }
  }
  return {
    at: (ip, proto, port) => byIp.get(ip)?.get(key(proto, port)),
    atNodePort: (proto, port) => nodePorts.get(key(proto, port)),
  };
}
