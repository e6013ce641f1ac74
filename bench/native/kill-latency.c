/*
 * The kill-latency benchmark's processes (bench/runtime-kill.ts compiles this with gcc):
 *
 *   kill-latency victim           writes CLOCK_MONOTONIC (ns, 8 bytes) to stdout, then open("/etc/shadow")
 *   kill-latency loop N           open+close /etc/hostname N times; prints "<wall ns> <cpu ns>" (user+sys)
 *   kill-latency wait N PREFIX... runs PREFIX... victim N times; for each, reads the victim's timestamp,
 *                                 waits for its death on a pidfd and prints "<latency ns> <signal>"
 *                                 (signal 0: it exited instead)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "victim") == 0) {
    uint64_t t = now_ns();
    if (write(1, &t, sizeof(t)) != sizeof(t)) return 2;
    int fd = open("/etc/shadow", O_RDONLY); /* the offending syscall */
    return fd < 0 ? 3 : 0;
  }
  if (argc >= 3 && strcmp(argv[1], "loop") == 0) {
    long n = atol(argv[2]);
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
      int fd = open("/etc/hostname", O_RDONLY);
      if (fd >= 0) close(fd);
    }
    uint64_t wall = now_ns() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t cpu = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
                   (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
    printf("%llu %llu\n", (unsigned long long)wall, (unsigned long long)cpu);
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "wait") == 0) {
    long n = atol(argv[2]);
    for (long i = 0; i < n; i++) {
      int p[2];
      if (pipe(p) != 0) return 1;
      pid_t pid = fork();
      if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execvp(argv[3], argv + 3);
        _exit(127);
      }
      close(p[1]);
      int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
      uint64_t t = 0;
      ssize_t got = read(p[0], &t, sizeof(t));
      close(p[0]);
      struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
      poll(&pfd, 1, -1);
      uint64_t dead = now_ns();
      int st = 0;
      waitpid(pid, &st, 0);
      close(pidfd);
      int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
      if (got != sizeof(t)) printf("-1 %d\n", sig);
      else printf("%llu %d\n", (unsigned long long)(dead - t), sig);
      fflush(stdout);
    }
    return 0;
  }
  fprintf(stderr, "usage: kill-latency victim | loop N | wait N CMD...\n");
  return 2;
}
