import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { UPSTREAM } from "./upstream-dir.js";
import { parse } from "yaml";
import { isMembraneError, type ErrorCode } from "../../../src/errors.js";
import {
  ARG_FIELDS,
  DOC_FIELDS,
  KPROBE_FIELDS,
  METADATA_FIELDS,
  parseTracingPolicies,
  SPEC_FIELDS,
  TRACEPOINT_FIELDS,
} from "../../../src/runtime/policy/parse.js";
import { MATCH_ACTIONS_FIELDS } from "../../../src/runtime/policy/actions.js";
import {
  MATCH_ARGS_FIELDS,
  MATCH_BINARIES_FIELDS,
  MATCH_CAPABILITIES_FIELDS,
  MATCH_NAMESPACES_FIELDS,
  MATCH_PIDS_FIELDS,
  SELECTOR_FIELDS,
} from "../../../src/runtime/policy/selectors.js";

/**
 * Every Tetragon example policy (examples/tracingpolicy/, vendored): those
 * Membrane can honour load; every other gets a named error at the field that
 * cannot be served ([code, path of the first problem]).
 */
const EXAMPLES: Record<string, "loads" | [ErrorCode, string]> = {
  "bpf.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "cves_cve-2023-2640-overlayfs-ubuntu.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "cves_cve-2024-3094-xz-ssh.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "datagram-with-selectors.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "datagram-with-sock-tracking.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "datagram.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "datagram_518.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "dev_hard_start_xmit.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "dev_queue_xmit.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "dns-only-specified-servers.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "fd_install_cap_changes.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchCapabilityChanges",
  ],
  "fd_install_caps.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchCapabilities[0].isNamespaceCapability",
  ],
  "fd_install_ns.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchNamespaces[0].namespace",
  ],
  "fd_install_ns_host.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchNamespaces[0].namespace",
  ],
  "filename_monitoring.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "filename_monitoring_filtered.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "hardlink-observe.yaml": "loads",
  "hardlink-override.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchActions[0].action",
  ],
  "host-changes_monitor-kernel-modules.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "host-changes_monitor-signed-kernel-modules.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "killer.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.lists"],
  "kprobe_commit_creds.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "list-generated-ftrace.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.lists"],
  "list-syscalls-generated.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.lists"],
  "list-syscalls-tracepoint.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.lists"],
  "list-syscalls.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.lists"],
  "loader.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.loader"],
  "lsm_bprm_check.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.lsmhooks"],
  "lsm_file_open.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.lsmhooks"],
  "lsm_track_grandparent.yml": ["TRACING_POLICY_UNSUPPORTED", "spec.lsmhooks"],
  "modules-nohost.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "open_dnsrequest.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchActions[0].action",
  ],
  "open_geturl.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].selectors[0].matchActions[0].action"],
  "openat_write.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "override-security.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "process-credentials_creds-capability-usage.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "process-credentials_process-creds-changed.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "process-credentials_process-creds-installed.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "process-credentials_process.credentials.changes.at.syscalls.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchNamespaces[0].namespace",
  ],
  "process-exec_process-exec-elf-begin.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "raw_syscalls.yaml": "loads",
  "rawtp.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.tracepoints[0].raw"],
  "sandbox_linux-namespaces_kill_unprivileged_user_namespace.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].call",
  ],
  "sandbox_linux-namespaces_kill_unprivileged_user_namespace_in_pid_namespace.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].call",
  ],
  "security-socket-connect-block-others.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchArgs[0].index",
  ],
  "security-socket-connect.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "security_bprm_check.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].returnArg"],
  "security_inode_follow_link.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "stack_traces.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "symlink-observe.yaml": "loads",
  "symlink-override.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchActions[0].action",
  ],
  "sys_clock_settime.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchPIDs[0].isNamespacePID",
  ],
  "sys_mount.yaml": "loads",
  "sys_pivot_root.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchPIDs[0].isNamespacePID",
  ],
  "sys_ptrace.yaml": "loads",
  "sys_setuid.yaml": "loads",
  "tcp-accept.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "tcp-connect-only-local-addrs.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchArgs[0].operator",
  ],
  "tcp-connect-only-private-addrs.yaml": [
    "TRACING_POLICY_UNSUPPORTED",
    "spec.kprobes[0].selectors[0].matchArgs[0].operator",
  ],
  "tcp-connect-with-selectors.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[1].call"],
  "tcp-connect.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[1].call"],
  "tcp-listen.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].return"],
  "tty.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "tty_54.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].call"],
  "uprobe-binaries.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.uprobes"],
  "uprobe-host.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.uprobes"],
  "uprobe-pid.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.uprobes"],
  "uprobe.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.uprobes"],
  "usdt-set.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.usdts"],
  "usdt.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.usdts"],
  "write.yaml": ["TRACING_POLICY_UNSUPPORTED", "spec.kprobes[0].args[1].sizeArgIndex"],
};

describe("Tetragon's example TracingPolicies as parse fixtures", () => {
  const files = readdirSync(join(UPSTREAM, "examples")).sort();

  test("the table names every vendored example", () => {
    assert.deepEqual(Object.keys(EXAMPLES).sort(), files);
  });

  for (const f of files) {
    const want = EXAMPLES[f];
    test(`${f}: ${want === "loads" ? "loads" : `${want?.[0]} at ${want?.[1]}`}`, () => {
      const text = readFileSync(join(UPSTREAM, "examples", f), "utf8");
      if (want === "loads") {
        assert.ok(parseTracingPolicies(text, f).length > 0);
        return;
      }
      assert.throws(
        () => parseTracingPolicies(text, f),
        (e) => isMembraneError(e) && e.code === want?.[0] && e.issues[0]?.path === want?.[1],
      );
    });
  }
});

type Schema = { properties?: Record<string, Schema>; items?: Schema };

describe("every field Membrane reads exists in Tetragon's CRD", () => {
  for (const crd of ["cilium.io_tracingpolicies.yaml", "cilium.io_tracingpoliciesnamespaced.yaml"]) {
    const doc = parse(readFileSync(join(UPSTREAM, crd), "utf8")) as {
      spec: { versions: { schema: { openAPIV3Schema: Schema } }[] };
    };
    const root = doc.spec.versions[0]?.schema.openAPIV3Schema as Schema;
    const at = (path: string[]): Schema => {
      let s: Schema | undefined = root;
      for (const k of path) {
        s = k === "[]" ? s?.items : s?.properties?.[k];
        assert.ok(s, `${crd}: ${path.join(".")} not in the CRD`);
      }
      return s as Schema;
    };
    const kp = ["spec", "kprobes", "[]"];
    const tp = ["spec", "tracepoints", "[]"];
    const sel = [...kp, "selectors", "[]"];
    const groups: [string[], readonly string[]][] = [
      [[], DOC_FIELDS.filter((f) => f !== "metadata")],
      [["spec"], SPEC_FIELDS],
      [kp, KPROBE_FIELDS],
      [tp, TRACEPOINT_FIELDS],
      [[...kp, "args", "[]"], ARG_FIELDS],
      [
        [...tp, "args", "[]"],
        ARG_FIELDS.filter((f) => !["returnCopy", "maxData", "sizeArgIndex", "source"].includes(f)),
      ],
      [sel, SELECTOR_FIELDS],
      [[...tp, "selectors", "[]"], SELECTOR_FIELDS],
      [[...sel, "matchArgs", "[]"], MATCH_ARGS_FIELDS],
      [[...sel, "matchBinaries", "[]"], MATCH_BINARIES_FIELDS],
      [[...sel, "matchPIDs", "[]"], MATCH_PIDS_FIELDS],
      [[...sel, "matchNamespaces", "[]"], MATCH_NAMESPACES_FIELDS],
      [[...sel, "matchCapabilities", "[]"], MATCH_CAPABILITIES_FIELDS],
      [[...sel, "matchActions", "[]"], MATCH_ACTIONS_FIELDS],
    ];
    for (const [path, fields] of groups)
      test(`${crd}: ${path.join(".") || "(document)"}: ${fields.join(", ")}`, () => {
        const s = at(path);
        const missing = fields.filter((f) => !(s.properties && f in s.properties));
        assert.deepEqual(missing, []);
      });
    test(`${crd}: metadata fields are Kubernetes ObjectMeta (${METADATA_FIELDS.length})`, () => {
      assert.ok(root.properties?.["metadata"]);
    });
  }
});
