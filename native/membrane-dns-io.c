/*
 * membrane-dns-io.node: a Node-API addon, the DNS proxy's UDP sockets read with recvmmsg(2) and
 * written with sendmmsg(2) (src/proxy/dns/native-io.ts).
 *
 *   bind(host, port, onEvent) -> handle | -errno     the listener: socket + bind, watched on Node's loop
 *   connect(host, port, onEvent) -> handle | -errno  an upstream socket: socket + connect (a fresh
 *                                                    random source port; only that peer reaches it)
 *   localPort(h) -> port | -errno
 *   rcvmark(h) -> 0 | -errno  SO_RCVMARK (Linux 5.19+): each datagram's packet mark comes with it
 *   interest(h, mask)        1 readable, 2 writable, 0 neither (the poll is stopped)
 *   onEvent(events | -errno) called through napi_make_callback (ticks and microtasks run after)
 *   recv(h, buf, slot, meta, max) -> n | -errno
 *       one recvmmsg of up to `max` datagrams: datagram i in buf[i*slot ..], its record in meta
 *       (Int32Array, REC ints each): length, truncated (1: longer than slot), family (4/6), port,
 *       the address's 16 bytes as they came (network order), the IPv6 scope id, the packet mark
 *       (SOL_SOCKET/SO_MARK control message, with rcvmark; 0 when absent)
 *   send(h, buf, count, meta) -> n sent | -errno
 *       one sendmmsg of `count` datagrams: record i = offset, length, family (0: the connected
 *       peer), port, address bytes, scope id; n < count: the first n left, the rest did not
 *       (-errno: not even the first, e.g. -EAGAIN)
 *   close(h)                 the poll closed, then the fd; idempotent
 *
 * Why: a proxied UDP query costs two datagrams in and two out; through dgram each is a system call
 * (recvmsg, sendmsg) and a call into JavaScript, and on this kind of virtual machine a system call
 * is most of the cost. Here the datagrams that are ready come in one call and the replies of one
 * turn of the loop leave in one. Every byte is still parsed and judged by the proxy's JavaScript.
 *
 * Every range is checked against the buffers it points into; nothing is kept between calls but
 * the socket.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define REC 12      /* int32s per datagram record */
#define MAX_BATCH 64

#ifndef SO_RCVMARK
#define SO_RCVMARK 75 /* include/uapi/asm-generic/socket.h, Linux 5.19 */
#endif

#define WATCH_USAGE_CODE "DNS_IO_USAGE"
#include "membrane-napi-watch.h"

/* An IPv4 or IPv6 literal and a port into a socket address; 0, or -EINVAL for anything else. */
static int parse_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (port < 0 || port > 65535) return -EINVAL;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    *len = sizeof *v4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    *len = sizeof *v6;
    return 0;
  }
  return -EINVAL;
}

/* (host: string, port: int, onEvent: function): a socket bound (listener) or connected (upstream). */
static napi_value open_socket(napi_env env, napi_callback_info info, int connecting) {
  size_t argc = 3;
  napi_value argv[3];
  char host[64];
  size_t hlen = 0;
  int32_t port = -1;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_string_utf8(env, argv[0], host, sizeof host, &hlen) != napi_ok ||
      hlen >= sizeof host - 1 || napi_get_value_int32(env, argv[1], &port) != napi_ok ||
      napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function)
    return usage(env, "(host: IP literal, port: 0..65535, onEvent: function)");
  struct sockaddr_storage ss;
  socklen_t slen = 0;
  if (parse_addr(host, port, &ss, &slen) != 0) return num(env, -EINVAL);
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) return usage(env, "no event loop");
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return num(env, -errno);
  int r = connecting ? connect(fd, (struct sockaddr *)&ss, slen) : bind(fd, (struct sockaddr *)&ss, slen);
  if (r != 0) {
    int e = errno;
    close(fd);
    return num(env, -e);
  }
  watch_t *w = (watch_t *)calloc(1, sizeof *w);
  if (w == NULL) {
    close(fd);
    return num(env, -ENOMEM);
  }
  r = uv_poll_init(loop, &w->poll, fd);
  if (r != 0) {
    close(fd);
    free(w);
    return num(env, r);
  }
  return watch_external(env, w, fd, argv[2], "membrane.dns-io", "out of memory");
}

static napi_value op_bind(napi_env env, napi_callback_info info) { return open_socket(env, info, 0); }

static napi_value op_connect(napi_env env, napi_callback_info info) { return open_socket(env, info, 1); }

static watch_t *one_handle(napi_env env, napi_callback_info info, const char *what) {
  size_t argc = 1;
  napi_value argv[1];
  watch_t *w = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      (w = handle_of(env, argv[0])) == NULL)
    usage(env, what);
  return w;
}

static napi_value op_local_port(napi_env env, napi_callback_info info) {
  watch_t *w = one_handle(env, info, "localPort(handle)");
  if (w == NULL) return NULL;
  if (w->closed) return num(env, -EBADF);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(w->fd, (struct sockaddr *)&ss, &len) != 0) return num(env, -errno);
  if (ss.ss_family == AF_INET) return num(env, ntohs(((struct sockaddr_in *)&ss)->sin_port));
  return num(env, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
}

/*
 * The datapath sets each datagram redirected to the DNS proxy's port to its conntrack entry's id
 * (`meta mark set ct id`, datapath/compile-nat.ts); with SO_RCVMARK the mark comes with the
 * datagram, so the proxy can tell two flows of the same source port apart (dns-origins.ts).
 */
static napi_value op_rcvmark(napi_env env, napi_callback_info info) {
  watch_t *w = one_handle(env, info, "rcvmark(handle)");
  if (w == NULL) return NULL;
  if (w->closed) return num(env, -EBADF);
  int one = 1;
  if (setsockopt(w->fd, SOL_SOCKET, SO_RCVMARK, &one, sizeof one) != 0) return num(env, -errno);
  return num(env, 0);
}

static napi_value op_interest(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t mask = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[1], &mask) != napi_ok || mask < 0 || mask > 3)
    return usage(env, "interest(handle, mask: 0..3)");
  watch_t *w = handle_of(env, argv[0]);
  if (w == NULL) return usage(env, "interest: not a handle");
  if (w->closed) return num(env, -EBADF);
  int events = ((mask & 1) ? UV_READABLE : 0) | ((mask & 2) ? UV_WRITABLE : 0);
  int r = events == 0 ? uv_poll_stop(&w->poll) : uv_poll_start(&w->poll, events, on_poll);
  return num(env, r);
}

/* (handle, buffer, a, meta: Int32Array, b): the handle, the bytes and the records, checked. */
typedef struct {
  watch_t *w;
  uint8_t *buf;
  size_t blen;
  int32_t *meta;
  size_t mlen; /* int32s */
  int64_t a, b;
} io_args_t;

static int io_args(napi_env env, napi_callback_info info, io_args_t *o, size_t argc_want) {
  size_t argc = 5;
  napi_value argv[5];
  void *data = NULL;
  napi_typedarray_type tt;
  size_t mlen = 0, moff = 0;
  napi_value mab;
  void *mdata = NULL;
  bool is_ta = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != argc_want ||
      napi_get_buffer_info(env, argv[1], &data, &o->blen) != napi_ok ||
      napi_get_value_int64(env, argv[2], &o->a) != napi_ok ||
      napi_is_typedarray(env, argv[3], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[3], &tt, &mlen, &mdata, &mab, &moff) != napi_ok ||
      tt != napi_int32_array || (argc_want == 5 && napi_get_value_int64(env, argv[4], &o->b) != napi_ok))
    return 0;
  o->w = handle_of(env, argv[0]);
  o->buf = (uint8_t *)data;
  o->meta = (int32_t *)mdata;
  o->mlen = mlen;
  return o->w != NULL;
}

static napi_value op_recv(napi_env env, napi_callback_info info) {
  io_args_t o;
  if (!io_args(env, info, &o, 5)) return usage(env, "recv(handle, buffer, slot, meta: Int32Array, max)");
  int64_t slot = o.a, max = o.b;
  if (slot <= 0 || (uint64_t)slot > o.blen || max <= 0 || max > MAX_BATCH || (uint64_t)(slot * max) > o.blen ||
      (uint64_t)(max * REC) > o.mlen)
    return usage(env, "recv: max (1..64) slots of `slot` bytes must fit the buffer, max records the meta");
  if (o.w->closed) return num(env, -EBADF);
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_storage from[MAX_BATCH];
  /* Room for the SO_MARK control message (only sent with rcvmark); aligned as cmsghdr needs. */
  union {
    char buf[CMSG_SPACE(sizeof(uint32_t))];
    struct cmsghdr align;
  } control[MAX_BATCH];
  memset(msgs, 0, sizeof(msgs[0]) * (size_t)max);
  for (int64_t i = 0; i < max; i++) {
    iov[i].iov_base = o.buf + i * slot;
    iov[i].iov_len = (size_t)slot;
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_control = control[i].buf;
    msgs[i].msg_hdr.msg_controllen = sizeof control[i].buf;
  }
  int r;
  do r = recvmmsg(o.w->fd, msgs, (unsigned)max, MSG_DONTWAIT, NULL);
  while (r < 0 && errno == EINTR);
  if (r < 0) return num(env, -errno);
  for (int i = 0; i < r; i++) {
    int32_t *m = o.meta + (size_t)i * REC;
    memset(m, 0, REC * sizeof *m);
    m[0] = (int32_t)msgs[i].msg_len;
    m[1] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 1 : 0;
    if (from[i].ss_family == AF_INET && msgs[i].msg_hdr.msg_namelen >= sizeof(struct sockaddr_in)) {
      struct sockaddr_in *s = (struct sockaddr_in *)&from[i];
      m[2] = 4;
      m[3] = ntohs(s->sin_port);
      memcpy(&m[4], &s->sin_addr, 4);
    } else if (from[i].ss_family == AF_INET6 &&
               msgs[i].msg_hdr.msg_namelen >= sizeof(struct sockaddr_in6)) {
      struct sockaddr_in6 *s = (struct sockaddr_in6 *)&from[i];
      m[2] = 6;
      m[3] = ntohs(s->sin6_port);
      memcpy(&m[4], &s->sin6_addr, 16);
      m[8] = (int32_t)s->sin6_scope_id;
    }
    /* The packet mark, when the kernel sent it whole (MSG_CTRUNC: not trusted, left 0). */
    if (!(msgs[i].msg_hdr.msg_flags & MSG_CTRUNC)) {
      struct msghdr *h = &msgs[i].msg_hdr;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_MARK &&
            c->cmsg_len == CMSG_LEN(sizeof(uint32_t))) {
          uint32_t mark;
          memcpy(&mark, CMSG_DATA(c), sizeof mark);
          m[9] = (int32_t)mark;
        }
      }
    }
  }
  return num(env, r);
}

static napi_value op_send(napi_env env, napi_callback_info info) {
  io_args_t o;
  if (!io_args(env, info, &o, 4)) return usage(env, "send(handle, buffer, count, meta: Int32Array)");
  int64_t count = o.a;
  if (count <= 0 || count > MAX_BATCH || (uint64_t)(count * REC) > o.mlen)
    return usage(env, "send: count 1..64 records in meta");
  if (o.w->closed) return num(env, -EBADF);
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_storage to[MAX_BATCH];
  memset(msgs, 0, sizeof(msgs[0]) * (size_t)count);
  for (int64_t i = 0; i < count; i++) {
    const int32_t *m = o.meta + (size_t)i * REC;
    int64_t off = m[0], len = m[1];
    if (off < 0 || len < 0 || (uint64_t)off > o.blen || (uint64_t)len > o.blen - (uint64_t)off)
      return usage(env, "send: a record's offset + length is outside the buffer");
    if (m[3] < 0 || m[3] > 65535) return usage(env, "send: a record's port is outside 0..65535");
    iov[i].iov_base = o.buf + off;
    iov[i].iov_len = (size_t)len;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    memset(&to[i], 0, sizeof to[i]);
    if (m[2] == 4) {
      struct sockaddr_in *s = (struct sockaddr_in *)&to[i];
      s->sin_family = AF_INET;
      s->sin_port = htons((uint16_t)m[3]);
      memcpy(&s->sin_addr, &m[4], 4);
      msgs[i].msg_hdr.msg_name = s;
      msgs[i].msg_hdr.msg_namelen = sizeof *s;
    } else if (m[2] == 6) {
      struct sockaddr_in6 *s = (struct sockaddr_in6 *)&to[i];
      s->sin6_family = AF_INET6;
      s->sin6_port = htons((uint16_t)m[3]);
      memcpy(&s->sin6_addr, &m[4], 16);
      s->sin6_scope_id = (uint32_t)m[8];
      msgs[i].msg_hdr.msg_name = s;
      msgs[i].msg_hdr.msg_namelen = sizeof *s;
    } else if (m[2] != 0) {
      return usage(env, "send: a record's family is not 0, 4 or 6");
    }
  }
  int r;
  do r = sendmmsg(o.w->fd, msgs, (unsigned)count, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  return num(env, r < 0 ? -errno : r);
}

static napi_value op_close(napi_env env, napi_callback_info info) {
  watch_t *w = one_handle(env, info, "close(handle)");
  if (w == NULL) return NULL;
  shut(w);
  return NULL;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } ops[] = {{"bind", op_bind},   {"connect", op_connect}, {"localPort", op_local_port},
             {"rcvmark", op_rcvmark}, {"interest", op_interest}, {"recv", op_recv}, {"send", op_send},
             {"close", op_close}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    napi_value fn;
    napi_create_function(env, ops[i].name, NAPI_AUTO_LENGTH, ops[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, ops[i].name, fn);
  }
  static const struct {
    const char *name;
    int32_t v;
  } consts[] = {{"EAGAIN", -EAGAIN}, {"REC", REC}, {"MAX_BATCH", MAX_BATCH}};
  for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
    napi_value v;
    napi_create_int32(env, consts[i].v, &v);
    napi_set_named_property(env, exports, consts[i].name, v);
  }
  return exports;
}
