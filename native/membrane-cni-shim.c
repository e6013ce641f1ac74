/*
 * membrane-cni, the installed CNI plugin: a forwarder to the Membrane agent.
 *
 *   runtime --CNI_* env + stdin--> this shim --POST /v1/cni/invoke {env, stdin}--> agent (unix socket)
 *           <--stdout, exit code-- (the body verbatim; exit code from Membrane-Cni-Exit)
 *
 * The agent runs the plugin's logic (src/cni/plugin.ts run(): parsing, validation,
 * the spec's results and error objects), so the shim holds no CNI logic and
 * parses nothing it acts on except where to send: the top-level "socket" key
 * of the configuration (default /run/membrane/agent.sock). A Node process
 * costs ~110 ms of CPU per call before any work; this costs ~1 ms.
 *
 * Anything the shim does not handle itself goes to the Node plugin
 * (bin/membrane-cni.js, the reference; same environment, same stdin through a
 * memfd), which then answers exactly as before:
 *   - no CNI_COMMAND (run by hand) and VERSION (answered without an agent);
 *   - stdin over 1 MiB (error 5), a configuration whose top level the scan
 *     below cannot read plainly (escaped keys, a non-string or escaped socket);
 *   - the agent unreachable (nothing was sent: the Node plugin fails closed with 11);
 *   - an answer without Membrane-Cni-Exit (an agent without this route, or a
 *     request refused before it ran: nothing was done).
 * Once the request is sent, the shim never re-runs it: an agent that dies or
 * stays silent past the configuration's timeoutSeconds (+5 s) gives error 11.
 *
 * Hostile input: stdin bounded (1 MiB), the answer bounded (16 MiB), values
 * only ever JSON-escaped into the request, never passed to a shell.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef MEMBRANE_NODE
#define MEMBRANE_NODE "/usr/bin/node"
#endif
#define MAX_STDIN (1 << 20)
#define MAX_ANSWER (16 << 20)
#define DEFAULT_SOCKET "/run/membrane/agent.sock"

struct buf {
  char *p;
  size_t n, cap;
};

static void die_oom(void) {
  fputs("{\"cniVersion\":\"1.1.0\",\"code\":999,\"msg\":\"internal error\",\"details\":\"out of memory\"}\n",
        stdout);
  exit(1);
}

static void put(struct buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) die_oom();
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* A JSON string literal of n bytes (bytes >= 0x80 pass as they are: the agent decodes UTF-8). */
static void put_json(struct buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      put(b, e, 2);
    } else if (c < 0x20 || c == 0x7f) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      put(b, e, 6);
    } else {
      put(b, (const char *)&c, 1);
    }
  }
  put(b, "\"", 1);
}

static struct buf in; /* stdin as read */
static int in_read;   /* stdin was consumed into `in` */
static const char *version = "1.1.0";

/* The Node plugin beside the real binary: <root>/dist/bin/membrane-cni -> <root>/bin/membrane-cni.js. */
static void fallback(void) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  char js[PATH_MAX + 64] = "";
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = 0;
      snprintf(js, sizeof js, "%s/../../bin/membrane-cni.js", exe);
    }
  }
  if (in_read) {
    int fd = memfd_create("membrane-cni-stdin", 0);
    if (fd < 0 || (in.n > 0 && write(fd, in.p, in.n) != (ssize_t)in.n) || lseek(fd, 0, SEEK_SET) != 0 ||
        dup2(fd, 0) < 0)
      goto failed;
    close(fd);
  }
  fflush(stdout);
  char *argv[] = {(char *)MEMBRANE_NODE, js, NULL};
  execv(MEMBRANE_NODE, argv);
failed:;
  int err = errno;
  struct buf o = {0};
  puts_(&o, "{\"cniVersion\":");
  put_json(&o, version, strlen(version));
  puts_(&o, ",\"code\":999,\"msg\":\"internal error\",\"details\":");
  char d[PATH_MAX + 256];
  snprintf(d, sizeof d, "cannot run the Node plugin %s %s: %s", MEMBRANE_NODE, js, strerror(err));
  put_json(&o, d, strlen(d));
  puts_(&o, "}\n");
  fwrite(o.p, 1, o.n, stdout);
  exit(1);
}

/* The error object for a request sent and never answered (the Node plugin's AGENT_UNREACHABLE: 11). */
static void unanswered(const char *socket, const char *why) {
  struct buf o = {0};
  puts_(&o, "{\"cniVersion\":");
  put_json(&o, version, strlen(version));
  puts_(&o, ",\"code\":11,\"msg\":\"reach the Membrane agent\",\"details\":");
  char d[512];
  snprintf(d, sizeof d, "Cannot reach the agent at %s: %s", socket, why);
  put_json(&o, d, strlen(d));
  puts_(&o, "}\n");
  fwrite(o.p, 1, o.n, stdout);
  exit(1);
}

/* ---- the scan of the configuration's top level (where to send; the agent checks the rest) ---- */

static size_t ws(const char *s, size_t n, size_t i) {
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return i;
}
/* s[i] == '"': the index after the closing quote (0 when unterminated); *esc set when it holds a backslash. */
static size_t str_end(const char *s, size_t n, size_t i, int *esc) {
  *esc = 0;
  for (i++; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"') return i + 1;
    if (c == '\\') {
      *esc = 1;
      i++;
    } else if (c < 0x20) {
      return 0;
    }
  }
  return 0;
}
/* Any JSON value at s[i]: the index after it (0 when malformed as far as skipping goes). */
static size_t skip_value(const char *s, size_t n, size_t i) {
  int esc;
  if (i >= n) return 0;
  if (s[i] == '"') return str_end(s, n, i, &esc);
  if (s[i] == '{' || s[i] == '[') {
    size_t depth = 0;
    while (i < n) {
      char c = s[i];
      if (c == '"') {
        i = str_end(s, n, i, &esc);
        if (!i) return 0;
        continue;
      }
      if (c == '{' || c == '[') depth++;
      if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      i++;
    }
    return 0;
  }
  size_t j = i;
  while (j < n && !strchr(",}] \t\r\n", s[j])) j++;
  return j > i ? j : 0;
}

struct scan {
  char socket[108];
  char version[8];
  long timeout;
};

/* 1 when the top level reads plainly; the last occurrence of a key wins, as in JSON.parse. */
static int scan_conf(const char *s, size_t n, struct scan *out) {
  int esc;
  size_t i = ws(s, n, 0);
  if (i >= n || s[i] != '{') return 0;
  i = ws(s, n, i + 1);
  if (i < n && s[i] == '}') return 1;
  for (;;) {
    if (i >= n || s[i] != '"') return 0;
    size_t kend = str_end(s, n, i, &esc);
    if (!kend || esc) return 0;
    const char *key = s + i + 1;
    size_t klen = kend - i - 2;
    i = ws(s, n, kend);
    if (i >= n || s[i] != ':') return 0;
    i = ws(s, n, i + 1);
    size_t vend = skip_value(s, n, i);
    if (!vend) return 0;
    const char *val = s + i;
    size_t vlen = vend - i;
    if (klen == 6 && !memcmp(key, "socket", 6)) {
      if (val[0] != '"' || (str_end(s, n, i, &esc), esc) || vlen - 2 > 107 || vlen < 3 || val[1] != '/') return 0;
      memcpy(out->socket, val + 1, vlen - 2);
      out->socket[vlen - 2] = 0;
    } else if (klen == 10 && !memcmp(key, "cniVersion", 10)) {
      out->version[0] = 0;
      if (vlen == 7 && (!memcmp(val, "\"1.0.0\"", 7) || !memcmp(val, "\"1.1.0\"", 7))) {
        memcpy(out->version, val + 1, 5);
        out->version[5] = 0;
      }
    } else if (klen == 14 && !memcmp(key, "timeoutSeconds", 14)) {
      long t = 0;
      size_t k;
      for (k = 0; k < vlen && k < 4 && val[k] >= '0' && val[k] <= '9'; k++) t = t * 10 + (val[k] - '0');
      out->timeout = (k == vlen && t >= 1 && t <= 300) ? t : 30;
    }
    i = ws(s, n, vend);
    if (i < n && s[i] == ',') {
      i = ws(s, n, i + 1);
      continue;
    }
    return i < n && s[i] == '}';
  }
}

/* ---- the exchange with the agent ---- */

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline: 1 ready, 0 timed out. */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return 1; /* let read/write report it */
  }
}

static const char *ENV_KEYS[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS",
                                 "CNI_PATH"};

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const char *cmd = getenv("CNI_COMMAND");
  if (!cmd || !*cmd || !strcmp(cmd, "VERSION")) fallback();

  if (!isatty(0)) {
    char chunk[65536];
    for (;;) {
      ssize_t r = read(0, chunk, sizeof chunk);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fallback(); /* the Node plugin reports the read error (5) */
      if (r == 0) break;
      size_t take = in.n + (size_t)r > MAX_STDIN + 1 ? MAX_STDIN + 1 - in.n : (size_t)r;
      put(&in, chunk, take);
      in_read = 1;
      if (in.n > MAX_STDIN) break;
    }
  }
  in_read = 1;
  if (in.n > MAX_STDIN) fallback();

  struct scan sc = {DEFAULT_SOCKET, "", 30};
  if (!scan_conf(in.p ? in.p : "", in.n, &sc)) fallback();
  if (sc.version[0]) version = sc.version;

  struct buf body = {0};
  puts_(&body, "{\"env\":{");
  int first = 1;
  for (size_t k = 0; k < sizeof ENV_KEYS / sizeof *ENV_KEYS; k++) {
    const char *v = getenv(ENV_KEYS[k]);
    if (!v) continue;
    if (!first) puts_(&body, ",");
    first = 0;
    put_json(&body, ENV_KEYS[k], strlen(ENV_KEYS[k]));
    puts_(&body, ":");
    put_json(&body, v, strlen(v));
  }
  puts_(&body, "},\"stdin\":");
  put_json(&body, in.p ? in.p : "", in.n);
  puts_(&body, "}");

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fallback();
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  memcpy(addr.sun_path, sc.socket, strlen(sc.socket) + 1);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    close(fd);
    fallback(); /* down or refusing: nothing sent, the Node plugin fails closed with its message */
  }

  struct buf req = {0};
  char head[256];
  snprintf(head, sizeof head,
           "POST /v1/cni/invoke HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\nConnection: close\r\n\r\n",
           body.n);
  puts_(&req, head);
  put(&req, body.p, body.n);

  long long deadline = now_ms() + (sc.timeout + 5) * 1000LL;
  for (size_t off = 0; off < req.n;) {
    if (!wait_fd(fd, POLLOUT, deadline)) unanswered(sc.socket, "no answer within the timeout");
    ssize_t w = write(fd, req.p + off, req.n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) unanswered(sc.socket, "the connection broke while sending");
    off += (size_t)w;
  }

  struct buf ans = {0};
  size_t header_end = 0;
  long long content_length = -1;
  for (;;) {
    char chunk[65536];
    if (!wait_fd(fd, POLLIN, deadline)) unanswered(sc.socket, "no answer within the timeout");
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) unanswered(sc.socket, "the connection broke while reading the answer");
    if (r == 0) break;
    if (ans.n + (size_t)r > MAX_ANSWER) unanswered(sc.socket, "the answer is larger than 16 MiB");
    put(&ans, chunk, (size_t)r);
    if (!header_end) {
      char *e = memmem(ans.p, ans.n, "\r\n\r\n", 4);
      if (e) {
        header_end = (size_t)(e - ans.p) + 4;
        for (char *l = strstr(ans.p, "\r\n"); l && l < e; l = strstr(l + 2, "\r\n"))
          if (!strncasecmp(l + 2, "content-length:", 15)) {
            /* Bounded like the answer itself: a larger length would make the sums below wrap. */
            content_length = atoll(l + 17);
            if (content_length < 0 || content_length > MAX_ANSWER)
              unanswered(sc.socket, "the answer's Content-Length is not 0..16 MiB");
          }
      }
    }
    if (header_end && content_length >= 0 && ans.n >= header_end + (size_t)content_length) break;
  }
  close(fd);
  if (!header_end) unanswered(sc.socket, "the connection closed before an answer");
  if (content_length >= 0 && ans.n < header_end + (size_t)content_length)
    unanswered(sc.socket, "the connection closed in the middle of the answer");

  /* Our route marks its answers; anything else was refused before the plugin's logic ran. */
  int exit_code = -1;
  ans.p[header_end - 2] = 0;
  if (!strncmp(ans.p, "HTTP/1.1 200 ", 13))
    for (char *l = strstr(ans.p, "\r\n"); l; l = strstr(l + 2, "\r\n"))
      if (!strncasecmp(l + 2, "membrane-cni-exit:", 18)) {
        const char *v = l + 20;
        if (*v == ' ') v++;
        if ((v[0] == '0' || v[0] == '1') && v[1] == '\r') exit_code = v[0] - '0';
      }
  if (exit_code < 0) fallback();
  size_t len = content_length >= 0 ? (size_t)content_length : ans.n - header_end;
  if (len > 0 && fwrite(ans.p + header_end, 1, len, stdout) != len) return 1;
  if (fflush(stdout) != 0) return 1;
  return exit_code;
}
