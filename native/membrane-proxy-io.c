/*
 * membrane-proxy-io.node: a Node-API addon, the HTTP/1.1 proxy's socket I/O without Node's
 * stream machinery (src/proxy/http/native-io.ts).
 *
 *   open(fd, onEvent) -> handle   dup(fd) (close-on-exec) watched by a uv_poll_t on Node's own loop
 *   interest(h, mask)             1 readable, 2 writable, 0 neither (the poll is stopped)
 *   onEvent(events | -errno)      called through napi_make_callback (ticks and microtasks run after)
 *   read(h, buf, off, len)        one read(2): bytes, 0 at end of stream, -errno (-EAGAIN: nothing yet)
 *   write(h, buf, off, len)       one send(2) (MSG_NOSIGNAL): bytes written, or -errno
 *   shutdown(h)                   shutdown(SHUT_WR): our FIN once the caller's queue is written
 *   close(h)                      the poll closed, then the duplicate fd; idempotent
 *
 * Why: per request the proxy reads the client, writes upstream, reads upstream and writes the
 * client. Through net.Socket each of those runs Node's Readable/Writable code, a WriteWrap, a
 * timer refresh and a nextTick; here each is one Node-API call around the system call. Every
 * byte still goes through the proxy's JavaScript, which parses and judges it: only the plumbing
 * is native. No buffering here: a short write is the caller's to queue.
 *
 * The duplicate descriptor has its own epoll registration, so libuv's watcher of the original
 * (owned by the net.Socket, which has stopped reading) never meets ours. The original fd stays
 * with its net.Socket, whose destroy() closes it; the caller closes ours first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define WATCH_USAGE_CODE "PROXY_IO_USAGE"
#include "membrane-napi-watch.h"

static napi_value op_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function)
    return usage(env, "open(fd: int >= 0, onEvent: function)");
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL)
    return usage(env, "open: no event loop");
  int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return num(env, -errno);
  watch_t *w = (watch_t *)calloc(1, sizeof *w);
  if (w == NULL) {
    close(dup_fd);
    return num(env, -ENOMEM);
  }
  int r = uv_poll_init(loop, &w->poll, dup_fd);
  if (r != 0) {
    close(dup_fd);
    free(w);
    return num(env, r);
  }
  w->poll.data = w;
  w->env = env;
  w->fd = dup_fd;
  w->owners = 2;
  napi_value resource, name, ext;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "membrane.proxy-io", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[1], 1, &w->callback) != napi_ok ||
      napi_async_init(env, resource, name, &w->context) != napi_ok ||
      napi_create_external(env, w, finalize, NULL, &ext) != napi_ok) {
    w->owners = 1; /* no external: only the poll handle owns it */
    if (w->callback != NULL) napi_delete_reference(env, w->callback);
    shut_io(w);
    return usage(env, "open: out of memory");
  }
  return ext;
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

/* read/write: (handle, buffer, offset, length), the range checked against the buffer. */
static watch_t *io_args(napi_env env, napi_callback_info info, char **at, size_t *len) {
  size_t argc = 4;
  napi_value argv[4];
  void *data = NULL;
  size_t blen = 0;
  int64_t off = -1, n = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4 ||
      napi_get_buffer_info(env, argv[1], &data, &blen) != napi_ok ||
      napi_get_value_int64(env, argv[2], &off) != napi_ok ||
      napi_get_value_int64(env, argv[3], &n) != napi_ok || off < 0 || n < 0 ||
      (uint64_t)off > blen || (uint64_t)n > blen - (uint64_t)off) {
    usage(env, "(handle, buffer, offset, length) with offset + length inside the buffer");
    return NULL;
  }
  watch_t *w = handle_of(env, argv[0]);
  if (w == NULL) {
    usage(env, "not a handle");
    return NULL;
  }
  *at = (char *)data + off;
  *len = (size_t)n;
  return w;
}

/* One read or one send of the handle's fd into/from the given bytes: the count, or -errno. */
static napi_value io_once(napi_env env, napi_callback_info info, int sending) {
  char *at;
  size_t len;
  watch_t *w = io_args(env, info, &at, &len);
  if (w == NULL) return NULL;
  if (w->closed) return num(env, -EBADF);
  ssize_t r;
  do r = sending ? send(w->fd, at, len, MSG_NOSIGNAL | MSG_DONTWAIT) : read(w->fd, at, len);
  while (r < 0 && errno == EINTR);
  return num(env, r < 0 ? -errno : r);
}

static napi_value op_read(napi_env env, napi_callback_info info) { return io_once(env, info, 0); }

static napi_value op_write(napi_env env, napi_callback_info info) { return io_once(env, info, 1); }

static napi_value op_shutdown(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1)
    return usage(env, "shutdown(handle)");
  watch_t *w = handle_of(env, argv[0]);
  if (w == NULL) return usage(env, "shutdown: not a handle");
  if (w->closed) return num(env, -EBADF);
  return num(env, shutdown(w->fd, SHUT_WR) == 0 ? 0 : -errno);
}

static napi_value op_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1)
    return usage(env, "close(handle)");
  watch_t *w = handle_of(env, argv[0]);
  if (w == NULL) return usage(env, "close: not a handle");
  shut(w);
  return NULL;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } ops[] = {{"open", op_open},         {"interest", op_interest}, {"read", op_read},
             {"write", op_write},       {"shutdown", op_shutdown}, {"close", op_close}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    napi_value fn;
    napi_create_function(env, ops[i].name, NAPI_AUTO_LENGTH, ops[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, ops[i].name, fn);
  }
  napi_value eagain;
  napi_create_int32(env, -EAGAIN, &eagain);
  napi_set_named_property(env, exports, "EAGAIN", eagain);
  return exports;
}
