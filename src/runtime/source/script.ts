/**
 * The bpftrace program of the process event source: three scheduler
 * tracepoints (no kprobes: this kernel refuses them) and the clone syscalls'
 * entry (to tell threads from processes).
 *
 * Verifier cost grows fast with these loops (depth 24 with mount crossing did
 * not load within minutes; 16 loads in ~8 s on a loaded 2-core box).
 *
 * Short-lived processes: everything an exec event carries is read in the
 * kernel, inside sched_process_exec, while the process cannot have exited yet:
 * the arguments from the new mm (arg_start..arg_end, user memory), the cwd by
 * walking fs->pwd's dentries up to the process's root, crossing mount points
 * through struct mount (the vfsmount is its member at offset 32, stable since
 * Linux 3.3), and the filename from the tracepoint. Nothing is read from /proc
 * afterwards, so a process that exits at once still has its arguments and cwd.
 *
 * One exec is several printf lines (BPF's 512-byte stack), from two programs
 * on the same tracepoint (one program with both loops took the verifier over a
 * minute on a loaded 2-core box; split, ~7 s): E (header) and A (argument
 * chunks, at most ARG_CHUNKS x BUFLEN bytes, `truncArgs` beyond); then C (cwd
 * components, innermost first, at most CWD_DEPTH, each with its length: one
 * longer than BUFLEN bytes makes the cwd incomplete, `errorCWD`; a branch for
 * that in BPF made the program fail to load) and B (the filename, last
 * because it is printed raw). Both run in the exec's task on one CPU; lines of
 * other CPUs may interleave, and exec moves a task between CPUs (sched_exec),
 * so two execs of one pid (`ip netns exec` then the command) can arrive in
 * either order: lines carry the task's self_exec_id, ./assemble.ts joins them
 * per (pid, exec seq) whatever the order, and ./reorder.ts puts whole records
 * back in kernel time order.
 *
 * Lines (the `data` of bpftrace's JSON output, `-f json`):
 *   F <child pid> <parent tgid> <ktime>                            fork of a process (not of a thread)
 *   E <pid> <exec seq> <ppid> <uid> <auid> <netns inode> <cgroup id> <start_boottime> <ktime> <argument bytes>
 *   A <pid> <exec seq> <chunk, non-printable bytes as \xNN>
 *   C <pid> <exec seq> <length> <cwd component, as \xNN-escaped bytes, at most BUFLEN>
 *   B <pid> <exec seq> <components> <cwd complete: 1|0> <filename>
 *   X <pid> <exit_code as wait(2) status> <ktime>                   the last thread of a process exits
 */

/** bpftrace's string size (BPFTRACE_MAX_STRLEN): the filename. */
export const STRLEN = 200;
/** What one `buf()` prints: bpftrace 0.17 cuts buffers at 64 bytes whatever BPFTRACE_MAX_STRLEN says. */
export const BUFLEN = 64;
/** Argument chunks per exec: at most ARG_CHUNKS * BUFLEN bytes of arguments, `truncArgs` beyond. */
export const ARG_CHUNKS = 8;
/** Cwd components walked; a deeper cwd is marked incomplete (`errorCWD`). */
export const CWD_DEPTH = 16;
/** Offset of `struct vfsmount mnt` in `struct mount` (hlist_node, 2 pointers before it). */
const MOUNT_MNT_OFFSET = 32;

export function processScript(): string {
  return `
tracepoint:sched:sched_process_exec {
  $t = curtask; $m = $t->mm; $n = $m->arg_end - $m->arg_start;
  printf("E %d %llu %d %d %u %u %llu %llu %llu %llu\\n", pid, $t->self_exec_id, $t->real_parent->tgid, uid, $t->loginuid.val,
    $t->nsproxy->net_ns->ns.inum, cgroup, $t->start_boottime, nsecs, $n);
  $i = (uint64)0;
  while ($i < ${ARG_CHUNKS}) {
    if ($i * ${BUFLEN} >= $n) { break; }
    $l = $n - $i * ${BUFLEN}; if ($l > ${BUFLEN}) { $l = ${BUFLEN}; }
    printf("A %d %llu %r\\n", pid, $t->self_exec_id, buf(uptr($m->arg_start + $i * ${BUFLEN}), $l));
    $i++;
  }
}
tracepoint:sched:sched_process_exec {
  $t = curtask;
  $d = $t->fs->pwd.dentry;
  $mnt = (struct mount *)((uint64)$t->fs->pwd.mnt - ${MOUNT_MNT_OFFSET});
  $rd = $t->fs->root.dentry;
  $rm = (struct mount *)((uint64)$t->fs->root.mnt - ${MOUNT_MNT_OFFSET});
  $j = 0; $k = 0; $done = 0;
  while ($k < ${CWD_DEPTH + 4}) {
    $k++;
    if ($d == $rd && $mnt == $rm) { $done = 1; break; }
    if ($d == $mnt->mnt.mnt_root) {
      if ($mnt == $mnt->mnt_parent) { $done = 1; break; }
      $d = $mnt->mnt_mountpoint; $mnt = $mnt->mnt_parent; continue;
    }
    if ($d == $d->d_parent) { $done = 1; break; }
    if ($j >= ${CWD_DEPTH}) { break; }
    printf("C %d %llu %u %r\\n", pid, $t->self_exec_id, $d->d_name.len, buf($d->d_name.name, $d->d_name.len));
    $d = $d->d_parent; $j++;
  }
  printf("B %d %llu %d %d %s\\n", pid, $t->self_exec_id, $j, $done, str(args->filename));
}
tracepoint:syscalls:sys_enter_clone / args->clone_flags & 0x10000 / { @thread[tid] = 1; }
tracepoint:syscalls:sys_enter_clone3 {
  if (((struct clone_args *)uptr(args->uargs))->flags & 0x10000) { @thread[tid] = 1; }
}
tracepoint:sched:sched_process_fork {
  if (@thread[tid]) { delete(@thread[tid]); }
  else { printf("F %d %d %llu\\n", args->child_pid, pid, nsecs); }
}
tracepoint:sched:sched_process_exit / curtask->signal->live.counter == 0 / {
  delete(@thread[tid]);
  printf("X %d %d %llu\\n", pid, curtask->exit_code, nsecs);
}
`;
}
