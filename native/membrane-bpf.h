/*
 * What the BPF loaders share (membrane-connect-guard.c, membrane-exec-events.c,
 * membrane-syscall-guard.c):
 * the bpf(2) call, programs read as hex text from the agent (instructions made
 * by src/runtime/enforce/bpf-asm.ts), map creation, and a program load whose
 * map references are patched in (ld_imm64 with BPF_PSEUDO_MAP_FD, imm i = the
 * loader's i-th map: 0 the ring buffer, 1 the lost-records counter, more per
 * loader) with the verifier's last words for
 * the error, and the reading side of a BPF ring buffer. Everything is static inline: each loader is one translation unit
 * and uses what it needs.
 */
#ifndef MEMBRANE_BPF_H
#define MEMBRANE_BPF_H

#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline int sys_bpf(int cmd, union bpf_attr *attr) {
  return (int)syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static inline int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decodes hex text into at most `max` instructions; returns the count or -1. */
static inline int decode_insns(const char *hex, struct bpf_insn *out, size_t max) {
  size_t n = strlen(hex);
  if (n == 0 || n % 16 != 0 || n / 16 > max) return -1;
  unsigned char *b = (unsigned char *)out;
  for (size_t i = 0; i < n; i += 2) {
    int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
    if (hi < 0 || lo < 0) return -1;
    b[i / 2] = (unsigned char)(hi << 4 | lo);
  }
  return (int)(n / 16);
}

static inline int map_create(enum bpf_map_type type, uint32_t key, uint32_t value, uint32_t entries) {
  union bpf_attr a;
  memset(&a, 0, sizeof(a));
  a.map_type = type;
  a.key_size = key;
  a.value_size = value;
  a.max_entries = entries;
  return sys_bpf(BPF_MAP_CREATE, &a);
}

static char verifier_log[1 << 20];

/* The verifier log's last `lines` lines, on one line: bytes outside printable ASCII become `sub`. */
static inline const char *log_tail(int lines, char sub) {
  size_t n = strlen(verifier_log);
  while (n > 0 && (verifier_log[n - 1] == '\n' || verifier_log[n - 1] == ' ')) verifier_log[--n] = 0;
  char *p = verifier_log + n;
  for (int seen = 0; p > verifier_log; p--)
    if (p[-1] == '\n' && ++seen == lines) break;
  for (char *q = p; *q; q++)
    if (*q < 0x20 || *q > 0x7e) *q = sub;
  return *p ? p : "no verifier message";
}

/* Loads a GPL program after patching its map references (imm i = maps[i], i < nmaps); the fd, or -errno. */
static inline int load_prog_maps(enum bpf_prog_type type, enum bpf_attach_type expected, struct bpf_insn *insns,
                                 int n, const int *maps, int nmaps) {
  for (int i = 0; i < n; i++) {
    if (insns[i].code == (BPF_LD | BPF_DW | BPF_IMM) && insns[i].src_reg == BPF_PSEUDO_MAP_FD) {
      if (insns[i].imm < 0 || insns[i].imm >= nmaps) return -EINVAL;
      insns[i].imm = maps[insns[i].imm];
    }
  }
  union bpf_attr a;
  memset(&a, 0, sizeof(a));
  a.prog_type = type;
  a.expected_attach_type = expected;
  a.insns = (uint64_t)(uintptr_t)insns;
  a.insn_cnt = (uint32_t)n;
  a.license = (uint64_t)(uintptr_t) "GPL";
  a.log_buf = (uint64_t)(uintptr_t)verifier_log;
  a.log_size = sizeof(verifier_log);
  a.log_level = 1;
  verifier_log[0] = 0;
  int fd = sys_bpf(BPF_PROG_LOAD, &a);
  return fd < 0 ? -errno : fd;
}

/* Loads a GPL program whose map references are imm 0 (the ring buffer) and 1 (the lost counter). */
static inline int load_prog(enum bpf_prog_type type, enum bpf_attach_type expected, struct bpf_insn *insns, int n,
                            int ringbuf, int lost) {
  int maps[2] = {ringbuf, lost};
  return load_prog_maps(type, expected, insns, n, maps, 2);
}

/* A BPF ring buffer mapped for reading: the consumer page (ours to write), the producer page, the data. */
struct ringbuf {
  unsigned long *consumer;
  unsigned long *producer;
  unsigned char *data;
  unsigned long size;
};

/* Maps the ring buffer `fd` of `size` bytes (a power of two); 0, or -1 with errno set. */
static inline int ringbuf_map(int fd, unsigned long size, struct ringbuf *rb) {
  long page = sysconf(_SC_PAGESIZE);
  void *c = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (c == MAP_FAILED) return -1;
  unsigned char *p = mmap(NULL, (size_t)page + 2 * size, PROT_READ, MAP_SHARED, fd, page);
  if (p == MAP_FAILED) return -1;
  rb->consumer = c;
  rb->producer = (unsigned long *)p;
  rb->data = p + page;
  rb->size = size;
  return 0;
}

/* Hands every committed, not discarded record to `take` (its bytes and size) and frees its space. */
static inline void ringbuf_drain(struct ringbuf *rb, void (*take)(const unsigned char *rec, uint32_t size)) {
  unsigned long cons = __atomic_load_n(rb->consumer, __ATOMIC_ACQUIRE);
  unsigned long end = __atomic_load_n(rb->producer, __ATOMIC_ACQUIRE);
  while (cons < end) {
    uint32_t *hdr = (uint32_t *)(rb->data + (cons & (rb->size - 1)));
    uint32_t len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
    if (len & BPF_RINGBUF_BUSY_BIT) break;
    uint32_t size = len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
    if (!(len & BPF_RINGBUF_DISCARD_BIT)) take((const unsigned char *)hdr + BPF_RINGBUF_HDR_SZ, size);
    cons += (size + BPF_RINGBUF_HDR_SZ + 7) & ~7u;
    __atomic_store_n(rb->consumer, cons, __ATOMIC_RELEASE);
    if (cons >= end) end = __atomic_load_n(rb->producer, __ATOMIC_ACQUIRE);
  }
}

#endif
