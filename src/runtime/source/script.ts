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
 * One exec is several printf lines (BPF's 512-byte stack): E (header), A
 * (argument chunks, at most ARG_CHUNKS x STRLEN bytes, `truncArgs` beyond),
 * C (cwd components, innermost first, at most CWD_DEPTH), B (the filename, last
 * because it is printed raw). All lines of one exec come from one probe run on
 * one CPU, so they arrive in order; lines of other CPUs may interleave
 * (assembled per pid in ./assemble.ts).
 *
 * Lines (the `data` of bpftrace's JSON output, `-f json`):
 *   F <child pid> <parent tgid> <ktime>                            fork of a process (not of a thread)
 *   E <pid> <ppid> <uid> <auid> <netns inode> <cgroup id> <start_boottime> <ktime> <argument bytes>
 *   A <pid> <chunk, non-printable bytes as \xNN>
 *   C <pid> <cwd component, as \xNN-escaped bytes>
 *   B <pid> <components> <cwd complete: 1|0> <filename>
 *   X <pid> <exit_code as wait(2) status> <ktime>                   the last thread of a process exits
 */

/** bpftrace's string size (BPFTRACE_MAX_STRLEN): one argument chunk, one cwd component. */
export const STRLEN = 200;
/** Argument chunks per exec: at most ARG_CHUNKS * STRLEN bytes of arguments, `truncArgs` beyond. */
export const ARG_CHUNKS = 5;
/** Cwd components walked; a deeper cwd is marked incomplete (`errorCWD`). */
export const CWD_DEPTH = 16;
/** Offset of `struct vfsmount mnt` in `struct mount` (hlist_node, 2 pointers before it). */
const MOUNT_MNT_OFFSET = 32;

export function processScript(): string {
  return `
tracepoint:sched:sched_process_exec {
  $t = curtask; $m = $t->mm; $n = $m->arg_end - $m->arg_start;
  printf("E %d %d %d %u %u %llu %llu %llu %llu\\n", pid, $t->real_parent->tgid, uid, $t->loginuid.val,
    $t->nsproxy->net_ns->ns.inum, cgroup, $t->start_boottime, nsecs, $n);
  $i = (uint64)0;
  while ($i < ${ARG_CHUNKS}) {
    if ($i * ${STRLEN} >= $n) { break; }
    $l = $n - $i * ${STRLEN}; if ($l > ${STRLEN}) { $l = ${STRLEN}; }
    printf("A %d %r\\n", pid, buf(uptr($m->arg_start + $i * ${STRLEN}), $l));
    $i++;
  }
  $d = $t->fs->pwd.dentry; $vfs = $t->fs->pwd.mnt;
  $rd = $t->fs->root.dentry; $rm = $t->fs->root.mnt;
  $mnt = (struct mount *)((uint64)$vfs - ${MOUNT_MNT_OFFSET});
  $j = 0; $k = 0; $done = 0;
  while ($k < ${CWD_DEPTH + 4}) {
    $k++;
    if ($d == $rd && $mnt == (struct mount *)((uint64)$rm - ${MOUNT_MNT_OFFSET})) { $done = 1; break; }
    if ($d == $mnt->mnt.mnt_root) {
      if ($mnt == $mnt->mnt_parent) { $done = 1; break; }
      $d = $mnt->mnt_mountpoint; $mnt = $mnt->mnt_parent; continue;
    }
    if ($d == $d->d_parent) { $done = 1; break; }
    if ($j >= ${CWD_DEPTH}) { break; }
    printf("C %d %r\\n", pid, buf($d->d_name.name, $d->d_name.len));
    $d = $d->d_parent; $j++;
  }
  printf("B %d %d %d %s\\n", pid, $j, $done, str(args->filename));
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
