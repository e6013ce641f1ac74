/*
 * The runtime benches' workloads (bench/runtime-rate.ts and bench/runtime-overhead.ts compile this
 * with gcc). Each prints one line; CPU is user + system time of the process and of its reaped
 * children (the BPF programs run in the traced task's own context: their cost is in its system time).
 *
 *   rt-loops exec N BIN             vfork + exec BIN, N times, each reaped   -> "<wall ns> <cpu ns>"
 *   rt-loops open N PATH            open + close PATH, N times               -> "<wall ns> <cpu ns>"
 *   rt-loops flood P SECONDS RATE PATH
 *                                   P processes open(PATH) (which need not exist) for SECONDS, together
 *                                   RATE opens per second (0: as fast as they go), paced every 32 opens
 *                                   -> "<opens> <wall ns> <cpu ns>"
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t tv_ns(struct timeval t) { return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_usec * 1000ull; }

/* CPU of this process and of its reaped children, ns. */
static uint64_t cpu_ns(void) {
  struct rusage s, c;
  getrusage(RUSAGE_SELF, &s);
  getrusage(RUSAGE_CHILDREN, &c);
  return tv_ns(s.ru_utime) + tv_ns(s.ru_stime) + tv_ns(c.ru_utime) + tv_ns(c.ru_stime);
}

/* One flooding process: opens `path` until `end`, `per_s` per second (0: unpaced); the count. */
static uint64_t flood_one(const char *path, uint64_t t0, uint64_t end, double per_s) {
  uint64_t n = 0;
  for (;;) {
    for (int i = 0; i < 32; i++) {
      int fd = open(path, O_RDONLY);
      if (fd >= 0) close(fd);
    }
    n += 32;
    uint64_t t = now_ns();
    if (t >= end) return n;
    if (per_s > 0) {
      double due = (double)(t - t0) / 1e9 * per_s; /* opens due by now */
      if ((double)n > due) {
        uint64_t ahead = (uint64_t)(((double)n - due) / per_s * 1e9);
        struct timespec ts = {(time_t)(ahead / 1000000000ull), (long)(ahead % 1000000000ull)};
        nanosleep(&ts, NULL);
      }
    }
  }
}

int main(int argc, char **argv) {
  if (argc >= 4 && strcmp(argv[1], "exec") == 0) {
    long n = atol(argv[2]);
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
      pid_t p = vfork();
      if (p == 0) {
        execl(argv[3], argv[3], (char *)NULL);
        _exit(127);
      }
      if (p < 0) return 1;
      waitpid(p, NULL, 0);
    }
    printf("%llu %llu\n", (unsigned long long)(now_ns() - t0), (unsigned long long)cpu_ns());
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "open") == 0) {
    long n = atol(argv[2]);
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
      int fd = open(argv[3], O_RDONLY);
      if (fd >= 0) close(fd);
    }
    printf("%llu %llu\n", (unsigned long long)(now_ns() - t0), (unsigned long long)cpu_ns());
    return 0;
  }
  if (argc >= 6 && strcmp(argv[1], "flood") == 0) {
    int procs = atoi(argv[2]);
    double secs = atof(argv[3]), rate = atof(argv[4]);
    if (procs < 1 || procs > 64 || secs <= 0 || rate < 0) return 2;
    int fds[64][2];
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    for (int i = 0; i < procs; i++) {
      if (pipe(fds[i]) != 0) return 1;
      pid_t p = fork();
      if (p < 0) return 1;
      if (p == 0) {
        uint64_t n = flood_one(argv[5], t0, end, rate / procs);
        if (write(fds[i][1], &n, sizeof(n)) != sizeof(n)) _exit(1);
        _exit(0);
      }
      close(fds[i][1]);
    }
    uint64_t total = 0;
    for (int i = 0; i < procs; i++) {
      uint64_t n = 0;
      if (read(fds[i][0], &n, sizeof(n)) == sizeof(n)) total += n;
      close(fds[i][0]);
    }
    while (wait(NULL) > 0) {
    }
    printf("%llu %llu %llu\n", (unsigned long long)total, (unsigned long long)(now_ns() - t0),
           (unsigned long long)cpu_ns());
    return 0;
  }
  fprintf(stderr, "usage: rt-loops exec N BIN | open N PATH | flood PROCS SECONDS RATE PATH\n");
  return 2;
}
