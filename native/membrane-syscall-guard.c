/*
 * membrane-syscall-guard: the runtime enforcer's Sigkill/Signal path without
 * bpftrace. Loads the raw tracepoint programs generated per policy by
 * src/runtime/enforce/kill-prog.ts (the policy's selectors as immediates),
 * attaches them with BPF_RAW_TRACEPOINT_OPEN (the attachment is a file
 * descriptor of this process, nothing is pinned) and reports the events they
 * write into a BPF ring buffer, until its stdin closes or its parent dies.
 *
 *   stdin:  "prog <raw tracepoint name> <hex instructions>\n"... ["bin <tgid> <mask>\n"...] "go\n"
 *   stdout: frames `u32 type, u32 length, payload` (host byte order), as membrane-exec-events:
 *           1 READY (empty) | 2 ERROR "<stage> <errno> <text>" | 3 RECORDS (EVENT_SIZE records back
 *           to back) | 4 LOST (u64: ring-buffer reserve failures, sent when it changes)
 *
 * Maps (ld_imm64 BPF_PSEUDO_MAP_FD imm): 0 the ring buffer, 1 the lost
 * counter (array of one u64), 2 the per-CPU scratch (paths read from user
 * memory, the caller's registers), 3 the binaries of live processes (tgid ->
 * bit mask: the policy's binaries its exec matched, the followForks entries it
 * descends from). "bin" lines seed it for processes that exist before the
 * programs attach (the agent reads them from /proc), before any attach.
 *
 * The kill is bpf_send_signal, called by the program in the offending task's
 * own context at syscall entry: this loader never signals anybody, so it runs
 * with CAP_BPF + CAP_PERFMON only (no CAP_KILL).
 *
 * All or nothing: any failure before "ready" exits, and the kernel drops every
 * program and attachment this process held. After "ready" they live exactly
 * as long as this process: stdin EOF, SIGTERM or the parent's death
 * (PDEATHSIG). No program kills without an agent to report it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include "membrane-bpf.h"
#include "membrane-rb-loader.h"
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_INSNS 16384
#define MAX_PROGS 4
#define MAX_LINE (MAX_INSNS * 16 + 128)
/* 4 MiB: ~11,000 records, 0.2 s of a 50,000 events/s flood while the loader waits for a CPU. */
#define RINGBUF_SIZE (4 * 1024 * 1024)
/* Must match src/runtime/enforce/kill-record.ts. */
#define EVENT_SIZE 368
#define SCRATCH_SIZE 8448
#define BINARIES_MAX 65536

static uint64_t read_lost(int lost) {
  union bpf_attr a;
  uint32_t key = 0;
  uint64_t value = 0;
  memset(&a, 0, sizeof(a));
  a.map_fd = (uint32_t)lost;
  a.key = (uint64_t)(uintptr_t)&key;
  a.value = (uint64_t)(uintptr_t)&value;
  return sys_bpf(BPF_MAP_LOOKUP_ELEM, &a) == 0 ? value : 0;
}

/* Records of one drain, back to back, leave in one RECORDS frame (176 records per 64 KiB). */
#define BATCH_RECORDS 176
static unsigned char batch[BATCH_RECORDS * EVENT_SIZE];
static uint32_t batched;
static unsigned long taken;

static void flush(void) {
  if (batched) frame(F_RECORDS, batch, batched * EVENT_SIZE);
  batched = 0;
}

static void take(const unsigned char *rec, uint32_t size) {
  if (size != EVENT_SIZE) return;
  taken++;
  if (batched == BATCH_RECORDS) flush();
  memcpy(batch + batched * EVENT_SIZE, rec, EVENT_SIZE);
  batched++;
}

int main(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1; /* the parent is already gone */
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  static char line[MAX_LINE];
  static struct bpf_insn progs[MAX_PROGS][MAX_INSNS];
  static char names[MAX_PROGS][64];
  int counts[MAX_PROGS], nprogs = 0, go = 0, nseeds = 0;
  static uint32_t seed_pid[BINARIES_MAX];
  static uint64_t seed_mask[BINARIES_MAX];
  while (!go && fgets(line, sizeof(line), stdin)) {
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') fail("input", EINVAL, "line too long or unterminated");
    line[len - 1] = 0;
    if (strncmp(line, "prog ", 5) == 0) {
      if (nprogs >= MAX_PROGS) fail("input", E2BIG, "too many programs");
      counts[nprogs] = parse_prog_line(line + 5, names[nprogs], progs[nprogs], MAX_INSNS);
      nprogs++;
    } else if (strncmp(line, "bin ", 4) == 0) {
      unsigned long pid = 0;
      unsigned long long mask = 0;
      char extra;
      if (sscanf(line + 4, "%lu %llu%c", &pid, &mask, &extra) != 2 || pid == 0 || pid > 4194304 || mask == 0)
        fail("input", EINVAL, "bad bin line");
      if (nseeds >= BINARIES_MAX) fail("input", E2BIG, "too many bin lines");
      seed_pid[nseeds] = (uint32_t)pid;
      seed_mask[nseeds++] = mask;
    } else if (strcmp(line, "go") == 0) {
      go = 1;
    } else {
      fail("input", EINVAL, "unknown line");
    }
  }
  if (!go || nprogs == 0) fail("input", EINVAL, "need prog lines and go");

  int maps[4];
  if ((maps[0] = map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, RINGBUF_SIZE)) < 0) fail("ringbuf", errno, NULL);
  if ((maps[1] = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1)) < 0) fail("map:lost", errno, NULL);
  if ((maps[2] = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, SCRATCH_SIZE, 1)) < 0) fail("map:scratch", errno, NULL);
  if ((maps[3] = map_create(BPF_MAP_TYPE_HASH, 4, 8, BINARIES_MAX)) < 0) fail("map:binaries", errno, NULL);
  int fds[MAX_PROGS];
  load_raw_tps(&progs[0][0], MAX_INSNS, counts, names, nprogs, fds, maps, 4);
  for (int i = 0; i < nseeds; i++) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)maps[3];
    a.key = (uint64_t)(uintptr_t)&seed_pid[i];
    a.value = (uint64_t)(uintptr_t)&seed_mask[i];
    a.flags = BPF_ANY;
    if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a) != 0) fail("map:seed", errno, NULL);
  }
  struct ringbuf rb;
  if (ringbuf_map(maps[0], RINGBUF_SIZE, &rb) != 0) fail("mmap", errno, NULL);
  /* The programs that learn binaries (exec/fork/exit) come first in the input: attached before the
   * sys_enter program that reads what they learn. Attach all of them or none (an error exits). */
  attach_raw_tps(fds, names, nprogs);
  frame(F_READY, NULL, 0);

  uint64_t lost_seen = 0;
  struct pollfd pfd[2] = {{.fd = maps[0], .events = POLLIN}, {.fd = 0, .events = POLLIN}};
  for (;;) {
    int r = poll(pfd, 2, 1000);
    if (r < 0 && errno != EINTR) return 1;
    if (pfd[1].revents) {
      char buf[256];
      if (read(0, buf, sizeof(buf)) <= 0) return 0; /* stdin closed: detach by exiting */
    }
    ringbuf_drain(&rb, take);
    flush();
    uint64_t l = read_lost(maps[1]);
    if (l != lost_seen) {
      lost_seen = l;
      frame(F_LOST, &l, sizeof(l));
    }
    /* Coalesce: after a drain that found records, the next 5 ms of them go out together (one wakeup
     * of this loader and of the agent per batch instead of per record under a flood; a lone event,
     * a kill's, is still read at once). The kill itself never waits for this loop. */
    if (taken > 0) {
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, NULL);
      taken = 0;
    }
  }
}
