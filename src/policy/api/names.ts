/** Name syntax shared by several fields: Kubernetes object names, DNS names and patterns, port names. */

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Kubernetes object name (DNS-1123 subdomain); returns the reason when invalid. */
export function checkSubdomain(s: string): string | undefined {
  if (s.length > 253) return `"${s.slice(0, 20)}…" is longer than 253 characters`;
  if (s.split(".").every((l) => DNS1123_LABEL.test(l))) return undefined;
  return `"${s}" is not a valid name: use lower-case letters, digits, "-" and ".", starting and ending with a letter or digit`;
}

/** Namespace name (DNS-1123 label). */
export function checkLabelName(s: string): string | undefined {
  if (s.length <= 63 && DNS1123_LABEL.test(s)) return undefined;
  return `"${s}" is not a valid namespace name: at most 63 lower-case letters, digits and "-", starting and ending with a letter or digit`;
}

const FQDN_NAME = /^[-a-zA-Z0-9._]+$/;
const FQDN_PATTERN = /^[-a-zA-Z0-9._*]+$/;

/** toFQDNs / DNS rule names: returns the reason when invalid. */
export function checkFqdn(s: string, pattern: boolean): string | undefined {
  if (s === "") return "must not be empty";
  if (s.length > 255) return "must be at most 255 characters";
  if (!(pattern ? FQDN_PATTERN : FQDN_NAME).test(s)) {
    return pattern
      ? `"${s}" is not a valid pattern: only letters, digits, "-", "_", "." and "*" are allowed`
      : `"${s}" is not a valid DNS name: only letters, digits, "-", "_" and "." are allowed (use matchPattern for "*")`;
  }
  return undefined;
}

/** Lower-case with a trailing dot, as Cilium's dns.FQDN. */
export function normaliseFqdn(s: string): string {
  const l = s.toLowerCase();
  return l.endsWith(".") ? l : l + ".";
}

/** IANA service name (named port), already lower-cased; returns the reason when invalid. */
export function checkPortName(s: string): string | undefined {
  if (
    s.length >= 1 &&
    s.length <= 15 &&
    /^[a-z0-9-]+$/.test(s) &&
    /[a-z]/.test(s) &&
    !s.startsWith("-") &&
    !s.endsWith("-") &&
    !s.includes("--")
  ) {
    return undefined;
  }
  return `"${s}" is neither a port number (0-65535) nor a port name (1-15 characters of a-z, 0-9 and "-", with at least one letter)`;
}
