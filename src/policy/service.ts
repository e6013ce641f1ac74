/**
 * A Service as policies see it: the ServiceSpec the engine is fed, turned
 * into the ResolvedService that toServices peers select.
 *
 *   ServiceSpec {selector, ips} --resolveService--> ResolvedService
 *                                                     podSelector: selector AND pod namespace = service's
 *                                                     prefixes:    /32 or /128 per backend address
 */
import { hostPrefix, type Prefix } from "../labels/cidr.js";
import { POD_NAMESPACE_LABEL } from "../labels/k8s.js";
import { Selector } from "../labels/selector.js";
import type { ResolvedService } from "./peer.js";
import type { ServiceSpec } from "./query.js";

export function resolveService(spec: ServiceSpec): ResolvedService {
  return {
    name: spec.name,
    namespace: spec.namespace,
    labels: spec.labels ?? {},
    ...(spec.selector
      ? {
          podSelector: Selector.fromLabelSelector({ matchLabels: spec.selector }).and({
            source: "k8s",
            key: POD_NAMESPACE_LABEL,
            operator: "In",
            values: [spec.namespace],
          }),
        }
      : {}),
    prefixes: (spec.ips ?? []).map((ip) => hostPrefix(ip)).filter((p): p is Prefix => p !== undefined),
  };
}
