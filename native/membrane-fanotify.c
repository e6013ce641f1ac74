/*
 * membrane-fanotify: the file-access responder of runtime enforcement (issue 15, item 3).
 *
 *   agent --config lines on stdin (marks, scope, rules; "end")--> this responder
 *   kernel --FAN_OPEN_PERM / FAN_ACCESS_PERM events--> decide --> FAN_ALLOW / FAN_DENY (always answered)
 *   agent <--JSON lines on stdout: {"ready":..} then one line per denial (pid, path, mask, verdict)
 *
 * Why native: Node has no fanotify binding (fanotify_init/fanotify_mark and the
 * permission-event protocol are syscalls libuv does not wrap), and the answer
 * must never wait on the agent: a process opening a marked file is blocked in
 * the kernel until this program writes its verdict. Here the verdict is
 * written before anything is reported, and reports go to a bounded queue
 * drained without blocking (a full queue drops reports and counts them).
 *
 * Never deadlocks the host:
 *  - it never opens, reads or execs anything after the marks are placed, except
 *    procfs (/proc/<pid>/exe, /proc/<pid>/ns/<type>, /proc/self/fd/<n>): readlink and stat, no
 *    open, on a mount that is never marked; no allocation, no locale, no lazy
 *    binding (-z now);
 *  - every permission event is answered, whatever happens while deciding;
 *  - it exits when its stdin closes or the agent dies (PR_SET_PDEATHSIG): the
 *    kernel then allows every pending event and drops the marks with the fd;
 *  - FAN_UNLIMITED_QUEUE: a full default queue makes the kernel allow silently;
 *    unlimited, each queued event is a blocked task, so tasks bound the queue.
 *
 * Failure policy (decided): fail closed for selected endpoints, open for the
 * host. A process whose network namespace is in the scope and whose attribute
 * a deny rule needs cannot be read (path longer than the kernel can name,
 * binary unreadable) is denied ("unverified": true in the report): the policy
 * exists to protect that object from that workload. A process whose network
 * namespace cannot be read, or is outside the scope, is allowed: denying the
 * node's own processes on an internal error could stop the node itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "membrane-fanotify-out.h"

#define VALMAX 256
#define MAX_RULES 256
#define MAX_CONDS 1024
#define MAX_VALS 4096
#define MAX_SCOPE 65536
#define MAX_EXEMPT 16

enum { C_PATH, C_BIN, C_PID, C_NS };
enum { OP_EQ, OP_NE, OP_PRE, OP_NPRE };
static const char *const NS_NAMES[] = {"net", "mnt", "uts", "ipc", "cgroup", "time", "user"};
#define N_NS 7

struct val {
  char s[VALMAX];
  size_t n;
  unsigned long long num;
  int have_ino;
  dev_t dev;
  ino_t ino;
};
struct cond {
  int kind, op, ns, first, count;
};
struct rule {
  long id;
  int deny, post;
  uint64_t mask;
  int first, count;
};

static struct val vals[MAX_VALS];
static struct cond conds[MAX_CONDS];
static struct rule rules[MAX_RULES];
static unsigned long long scope[MAX_SCOPE];
static long exempt[MAX_EXEMPT];
static int nvals, nconds, nrules, nscope, nexempt, node_wide;
static unsigned long long errors, answered, denied;

static void fatal(const char *what, const char *detail) {
  char b[600];
  int n = snprintf(b, sizeof b, "{\"error\":\"%s: %s\"}\n", what, detail);
  if (n > 0) (void)!write(1, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
  exit(2);
}

static char *field(char *line, char **rest) {
  char *sp = strchr(line, ' ');
  if (sp) *sp = 0;
  *rest = sp ? sp + 1 : line + strlen(line);
  return line;
}

static unsigned long long num(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end) fatal("bad number", what);
  return v;
}

static uint64_t maskof(const char *s) {
  if (!strcmp(s, "open")) return FAN_OPEN_PERM;
  if (!strcmp(s, "access")) return FAN_ACCESS_PERM;
  if (!strcmp(s, "both")) return FAN_OPEN_PERM | FAN_ACCESS_PERM;
  fatal("bad mask", s);
  return 0;
}

/* Reads the configuration from stdin and places the marks: all of them or exit (nothing stays marked). */
static void configure(int fan) {
  char line[VALMAX + 64];
  struct cond *c = NULL;
  int need = 0;
  if (!fgets(line, sizeof line, stdin) || strcmp(line, "membrane-fanotify 1\n"))
    fatal("config", "bad header");
  while (fgets(line, sizeof line, stdin)) {
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') fatal("config", "line too long or unterminated");
    line[len - 1] = 0;
    char *rest, *k = field(line, &rest);
    if (need > 0 && strcmp(k, "val")) fatal("config", "missing val lines");
    if (!strcmp(k, "end")) {
      if (need) fatal("config", "missing val lines");
      return;
    } else if (!strcmp(k, "node")) {
      node_wide = 1;
    } else if (!strcmp(k, "scope")) {
      if (nscope >= MAX_SCOPE) fatal("config", "too many namespaces");
      scope[nscope++] = num(rest, "scope");
    } else if (!strcmp(k, "exempt")) {
      if (nexempt >= MAX_EXEMPT) fatal("config", "too many exempt pids");
      exempt[nexempt++] = (long)num(rest, "exempt");
    } else if (!strcmp(k, "mark")) {
      char *r2, *r3, *kind = field(rest, &r2), *m = field(r2, &r3);
      unsigned int flags = FAN_MARK_ADD;
      uint64_t mask = maskof(m);
      if (!strcmp(kind, "filesystem")) flags |= FAN_MARK_FILESYSTEM;
      else if (!strcmp(kind, "dir")) mask |= FAN_EVENT_ON_CHILD;
      else if (strcmp(kind, "inode")) fatal("bad mark kind", kind);
      if (fanotify_mark(fan, flags, mask, AT_FDCWD, r3) < 0) fatal(strerror(errno), r3);
    } else if (!strcmp(k, "rule")) {
      char *r2, *r3, *id = field(rest, &r2), *verdict = field(r2, &r3);
      if (nrules >= MAX_RULES) fatal("config", "too many rules");
      int deny = !strcmp(verdict, "deny") || !strcmp(verdict, "denyq");
      if (!deny && strcmp(verdict, "pass")) fatal("bad verdict", verdict);
      rules[nrules] = (struct rule){(long)num(id, "rule"), deny, strcmp(verdict, "denyq") != 0, maskof(r3), nconds, 0};
      nrules++;
    } else if (!strcmp(k, "cond")) {
      char *r2, *r3, *kd = field(rest, &r2), *op = field(r2, &r3);
      if (nrules == 0 || nconds >= MAX_CONDS) fatal("config", "cond without rule or too many");
      c = &conds[nconds++];
      *c = (struct cond){0, 0, 0, nvals, 0};
      if (!strcmp(kd, "path")) c->kind = C_PATH;
      else if (!strcmp(kd, "bin")) c->kind = C_BIN;
      else if (!strcmp(kd, "pid")) c->kind = C_PID;
      else {
        c->kind = C_NS, c->ns = -1;
        for (int i = 0; i < N_NS; i++)
          if (!strncmp(kd, "ns-", 3) && !strcmp(kd + 3, NS_NAMES[i])) c->ns = i;
        if (c->ns < 0) fatal("bad cond kind", kd);
      }
      c->op = !strcmp(op, "eq") ? OP_EQ : !strcmp(op, "ne") ? OP_NE : !strcmp(op, "pre") ? OP_PRE
            : !strcmp(op, "npre") ? OP_NPRE : -1;
      if (c->op < 0) fatal("bad op", op);
      need = (int)num(r3, "count");
      if (need <= 0) fatal("config", "cond with no values");
      rules[nrules - 1].count++;
    } else if (!strcmp(k, "val")) {
      if (need <= 0 || nvals >= MAX_VALS) fatal("config", "val without cond or too many");
      struct val *v = &vals[nvals++];
      size_t n = strlen(rest);
      if (n == 0 || n >= VALMAX) fatal("config", "value empty or too long");
      memcpy(v->s, rest, n + 1);
      v->n = n;
      if (c->kind == C_PID || c->kind == C_NS) v->num = num(rest, "value");
      struct stat st;
      /* Equal paths also match the object itself: a hard link or bind mount names the same inode. */
      if (c->kind == C_PATH && c->op <= OP_NE && stat(rest, &st) == 0)
        v->have_ino = 1, v->dev = st.st_dev, v->ino = st.st_ino;
      c->count++;
      need--;
    } else {
      fatal("config", "unknown line");
    }
  }
  fatal("config", "no end line");
}

struct ctx {
  int pid, fd;
  int path_state, exe_state; /* 0 unread, 1 known, -1 unknown */
  char path[PATH_MAX], exe[PATH_MAX];
  ssize_t path_n, exe_n;
  int path_trunc;
  int st_state;
  struct stat st;
};

static int rd_link(const char *p, char *b, ssize_t *n, int *trunc) {
  ssize_t r = readlink(p, b, PATH_MAX);
  if (r < 0) return -1;
  if (trunc) *trunc = r == PATH_MAX;
  *n = r;
  return 1;
}

/* The event's file name (readlink of our fd: d_path, no open) and the process's binary, read once. */
static void need_path(struct ctx *x) {
  char p[64];
  if (x->path_state) return;
  snprintf(p, sizeof p, "/proc/self/fd/%d", x->fd);
  x->path_state = rd_link(p, x->path, &x->path_n, &x->path_trunc);
}
static void need_exe(struct ctx *x) {
  char p[64];
  if (x->exe_state) return;
  snprintf(p, sizeof p, "/proc/%d/exe", x->pid);
  x->exe_state = rd_link(p, x->exe, &x->exe_n, NULL);
}

static int str_match(int op, const struct val *v, const char *s, ssize_t n, int trunc) {
  int eq = !trunc && (size_t)n == v->n && !memcmp(s, v->s, v->n);
  int pre = (size_t)n >= v->n && !memcmp(s, v->s, v->n);
  return op == OP_EQ || op == OP_NE ? eq : pre;
}

/* 1 holds, 0 does not, -1 cannot be known. */
static int cond_holds(const struct cond *c, struct ctx *x) {
  int any = 0;
  char p[64];
  if (c->kind == C_PATH) {
    need_path(x);
    if (x->st_state == 0) x->st_state = fstat(x->fd, &x->st) == 0 ? 1 : -1;
    for (int i = 0; i < c->count && !any; i++) {
      const struct val *v = &vals[c->first + i];
      if (v->have_ino && x->st_state == 1 && v->dev == x->st.st_dev && v->ino == x->st.st_ino) any = 1;
      else if (x->path_state == 1) any = str_match(c->op, v, x->path, x->path_n, x->path_trunc);
    }
    if (!any && x->path_state < 0) return -1;
  } else if (c->kind == C_BIN) {
    need_exe(x);
    if (x->exe_state < 0) return -1;
    for (int i = 0; i < c->count && !any; i++) any = str_match(c->op, &vals[c->first + i], x->exe, x->exe_n, 0);
  } else if (c->kind == C_PID) {
    for (int i = 0; i < c->count && !any; i++) any = vals[c->first + i].num == (unsigned long long)x->pid;
  } else {
    struct stat st;
    snprintf(p, sizeof p, "/proc/%d/ns/%s", x->pid, NS_NAMES[c->ns]);
    if (stat(p, &st) < 0) return -1;
    for (int i = 0; i < c->count && !any; i++) any = vals[c->first + i].num == (unsigned long long)st.st_ino;
  }
  return c->op == OP_NE || c->op == OP_NPRE ? !any : any;
}

static void report(const struct rule *r, struct ctx *x, const struct fanotify_event_metadata *m,
                   unsigned long long netns, int unverified) {
  static char b[3 * PATH_MAX * 5];
  char p[64];
  struct stat ps;
  snprintf(p, sizeof p, "/proc/%d", x->pid);
  long uid = stat(p, &ps) == 0 ? (long)ps.st_uid : -1;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  need_exe(x);
  need_path(x);
  size_t o = (size_t)snprintf(b, sizeof b,
                              "{\"rule\":%ld,\"pid\":%d,\"uid\":%ld,\"netns\":%llu,\"ktime\":%lld,\"mask\":\"%s\",\"verdict\":\"%s\","
                              "\"unverified\":%s,\"trunc\":%s,\"lost\":%llu,\"errors\":%llu,\"path\":",
                              r->id, x->pid, uid, netns,
                              (long long)now.tv_sec * 1000000000LL + now.tv_nsec, (m->mask & FAN_OPEN_PERM) ? "open" : "access",
                              r->deny ? "deny" : "allow", unverified ? "true" : "false",
                              x->path_trunc ? "true" : "false", lost, errors);
  o += x->path_state == 1 ? jstr(b + o, sizeof b - o, x->path, (size_t)x->path_n)
                          : (size_t)snprintf(b + o, sizeof b - o, "null");
  o += (size_t)snprintf(b + o, sizeof b - o, ",\"binary\":");
  o += x->exe_state == 1 ? jstr(b + o, sizeof b - o, x->exe, (size_t)x->exe_n)
                         : (size_t)snprintf(b + o, sizeof b - o, "null");
  o += (size_t)snprintf(b + o, sizeof b - o, "}\n");
  emit(b, o);
}

static uint32_t decide(const struct fanotify_event_metadata *m) {
  struct ctx *x = &(struct ctx){0};
  char p[64];
  struct stat st;
  x->pid = m->pid;
  x->fd = m->fd;
  for (int i = 0; i < nexempt; i++)
    if (exempt[i] == m->pid) return FAN_ALLOW;
  snprintf(p, sizeof p, "/proc/%d/ns/net", m->pid);
  if (stat(p, &st) < 0) {
    errors++; /* open for what cannot be attributed (see the failure policy above) */
    return FAN_ALLOW;
  }
  unsigned long long netns = (unsigned long long)st.st_ino;
  int in = node_wide;
  for (int i = 0; i < nscope && !in; i++) in = scope[i] == netns;
  if (!in) return FAN_ALLOW;
  for (int i = 0; i < nrules; i++) {
    const struct rule *r = &rules[i];
    if (!(r->mask & m->mask)) continue;
    int all = 1, unknown = 0;
    for (int j = 0; j < r->count && all; j++) {
      int h = cond_holds(&conds[r->first + j], x);
      if (h == 0) all = 0;
      if (h < 0) unknown = 1;
    }
    if (!all) continue;
    if (unknown && !r->deny) continue; /* fail closed: an unknown never makes an allow rule win */
    if (!r->deny) return FAN_ALLOW;  /* an earlier selector without Override matched first */
    if (r->post) report(r, x, m, netns, unknown);
    return FAN_DENY;
  }
  return FAN_ALLOW;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1) return 3;
  int fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE,
                          /* O_NONBLOCK: the kernel opens each event's file for us; a FIFO opened
                             for reading must not wait for a writer (the writer waits for us). This
                             kernel (6.18) raises permission events on regular files and directories
                             only (checked: a FIFO under a filesystem mark met its reader either way);
                             the flag keeps kernels that do report FIFOs safe. */
                          O_RDONLY | O_LARGEFILE | O_CLOEXEC | O_NONBLOCK);
  if (fan < 0) fatal("fanotify_init", strerror(errno));
  configure(fan);
  char ready[128];
  int n = snprintf(ready, sizeof ready, "{\"ready\":true,\"rules\":%d,\"pid\":%d}\n", nrules, (int)getpid());
  if (write(1, ready, (size_t)n) != n) return 0;
  if (fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK) < 0) return 0;
  static char buf[64 * 1024] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));
  for (;;) {
    struct pollfd pf[3] = {{fan, POLLIN, 0}, {0, POLLIN, 0}, {1, out_len ? POLLOUT : 0, 0}};
    if (poll(pf, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return 4;
    }
    if (pf[1].revents) {
      char c[64];
      ssize_t r = read(0, c, sizeof c);
      if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) return 0; /* the agent closed our stdin */
    }
    if (pf[0].revents & POLLIN) {
      ssize_t len = read(fan, buf, sizeof buf);
      /* The kernel could not open an event's file for us: it denied that one event itself and
         consumed it; count it and go on (exiting would leave nothing to answer the rest). */
      if (len < 0 && errno != EINTR && errno != EAGAIN) errors++;
      const struct fanotify_event_metadata *m = (const void *)buf;
      for (; len > 0 && FAN_EVENT_OK(m, len); m = FAN_EVENT_NEXT(m, len)) {
        if (m->vers != FANOTIFY_METADATA_VERSION) return 6; /* closing the fd allows what is pending */
        if (m->fd < 0) continue; /* FAN_Q_OVERFLOW (not with an unlimited queue) */
        if (m->mask & (FAN_OPEN_PERM | FAN_ACCESS_PERM)) {
          struct fanotify_response r = {m->fd, decide(m)};
          answered++;
          if (r.response == FAN_DENY) denied++;
          while (write(fan, &r, sizeof r) < 0 && errno == EINTR) {
          }
        }
        close(m->fd);
      }
    }
    flush_out();
  }
}
