/*
 * What the ring-buffer loaders share beyond the bpf(2) helpers of membrane-bpf.h
 * (membrane-exec-events.c, membrane-syscall-guard.c): the frames they write on
 * stdout, the error exit, the "prog" lines they read on stdin, and attaching
 * raw tracepoint programs all or none.
 *
 *   stdout frames: `u32 type, u32 length, payload` (host byte order)
 *     1 READY (empty) | 2 ERROR "<stage> <errno> <text>" | 3 RECORDS (records back to back)
 *     | 4 LOST (u64, sent when it changes) | 5 MARK (u64 CLOCK_MONOTONIC ns; exec-events only)
 *   stdin line: "prog <raw tracepoint name> <hex instructions>"
 *
 * Static inline like membrane-bpf.h: each loader is one translation unit.
 */
#ifndef MEMBRANE_RB_LOADER_H
#define MEMBRANE_RB_LOADER_H

#include <errno.h>
#include <linux/bpf.h>
#include "membrane-bpf.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { F_READY = 1, F_ERROR = 2, F_RECORDS = 3, F_LOST = 4, F_MARK = 5 };

/* Writes all of it to stdout; a reader that is gone detaches this loader (exit: the kernel drops its programs). */
static inline void write_all(const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(1, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) exit(0);
    c += w;
    n -= (size_t)w;
  }
}

static inline void frame(uint32_t type, const void *payload, uint32_t len) {
  uint32_t h[2] = {type, len};
  write_all(h, sizeof(h));
  if (len) write_all(payload, len);
}

/* An ERROR frame, then exit: everything loaded or attached so far goes with this process. */
static inline __attribute__((noreturn)) void fail(const char *stage, int err, const char *text) {
  char msg[1024];
  int n = snprintf(msg, sizeof(msg), "%s %d %s", stage, err, text ? text : strerror(err));
  frame(F_ERROR, msg, (uint32_t)(n < 0 ? 0 : n >= (int)sizeof(msg) ? (int)sizeof(msg) - 1 : n));
  exit(1);
}

/*
 * A "prog <name> <hex>" line's rest (after "prog "): the raw tracepoint's name (lowercase letters,
 * digits, '_', under 64 bytes) into `name`, its instructions into `insns` (at most `max`); the count.
 */
static inline int parse_prog_line(char *rest, char name[64], struct bpf_insn *insns, size_t max) {
  char *sp = strchr(rest, ' ');
  if (!sp || sp - rest >= 64 || sp == rest) fail("input", EINVAL, "bad prog line");
  memcpy(name, rest, (size_t)(sp - rest));
  name[sp - rest] = 0;
  for (char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) fail("input", EINVAL, "bad tracepoint name");
  int n = decode_insns(sp + 1, insns, max);
  if (n < 0) fail("input", EINVAL, "bad instructions");
  return n;
}

/* Loads raw tracepoint programs (their map references patched to `maps`); a failure names the program. */
static inline void load_raw_tps(struct bpf_insn *progs, size_t stride, const int *counts, char (*names)[64], int n,
                                int *fds, const int *maps, int nmaps) {
  for (int i = 0; i < n; i++) {
    fds[i] = load_prog_maps(BPF_PROG_TYPE_RAW_TRACEPOINT, 0, progs + (size_t)i * stride, counts[i], maps, nmaps);
    if (fds[i] < 0) {
      char stage[160];
      snprintf(stage, sizeof(stage), "load:%.63s", names[i]);
      fail(stage, -fds[i], log_tail(3, '|'));
    }
  }
}

/* Attaches every program in order, or exits (which detaches those already attached). */
static inline void attach_raw_tps(const int *fds, char (*names)[64], int n) {
  for (int i = 0; i < n; i++) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.raw_tracepoint.name = (uint64_t)(uintptr_t)names[i];
    a.raw_tracepoint.prog_fd = (uint32_t)fds[i];
    if (sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &a) < 0) {
      char stage[160];
      snprintf(stage, sizeof(stage), "attach:%.63s", names[i]);
      fail(stage, errno, NULL);
    }
  }
}

#endif
