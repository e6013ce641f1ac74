/**
 * The endpoint name of a pod: lower-cased, other characters "-", no leading or
 * trailing "-", at most 63 characters. One definition for membrane-cni (which
 * names the endpoint it asks for) and the Kubernetes watcher (which finds that
 * endpoint again to give it the pod object's labels).
 */
export function podEndpointName(pod: string): string {
  return pod
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
}
