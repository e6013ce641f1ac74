/*
 * fork-storm: the event source's load generator (bench/runtime-events.ts). N processes created
 * and reaped as fast as the machine goes: each is a fork (a new process, not a thread) that exits
 * at once, or with -e an exec of the given binary. Prints the wall seconds it took.
 *   fork-storm <count> [-e /bin/true]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  long n = atol(argv[1]);
  const char *bin = argc >= 4 && strcmp(argv[2], "-e") == 0 ? argv[3] : NULL;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) {
    pid_t p = vfork();
    if (p == 0) {
      if (bin) execl(bin, bin, (char *)NULL);
      _exit(0);
    }
    if (p < 0) return 1;
    waitpid(p, NULL, 0);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%.6f\n", (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  return 0;
}
