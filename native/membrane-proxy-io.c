/*
 * membrane-proxy-io.node: a Node-API addon, the HTTP/1.1 proxy's socket I/O without Node's
 * stream machinery (src/proxy/http/native-io.ts).
 *
 *   open(fd, onEvent) -> handle   dup(fd) (close-on-exec) watched by a uv_poll_t on Node's own loop
 *   interest(h, mask)             1 readable, 2 writable, 0 neither (the poll is stopped)
 *   onEvent(events | -errno)      called at the end of the loop's poll phase (below)
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
 * One loop turn's events are delivered together. The poll callbacks only note which handles
 * are ready (the turn's list); a check handle, which libuv runs right after the poll phase of
 * the same turn, then calls each handle's onEvent inside one callback scope. So Node's end of
 * callback (ticks, then microtasks) runs once per turn instead of once per event, and the
 * writes the caller queues during the turn (native-io.ts sends them in a microtask) go out
 * after every read of the turn was handled. Measured at saturation: the per-event callback
 * scope was a visible share of the proxy's user time, and a send(2) in the middle of the
 * turn wakes the peer, which then often took the CPU before the rest of the turn was read.
 * Nothing waits longer than the turn it became ready in.
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

/* One per Node environment: the handles ready in this turn, and the check handle that
 * delivers them. */
typedef struct turn turn_t;

/* A watched fd and its place in the turn's list (watch_t first: the header's code frees it). */
typedef struct {
  watch_t w;
  turn_t *turn;
  int queued; /* in the turn's list, which then owns it too (w.owners) */
  int events; /* the poll's events since it was queued, or -errno */
} pwatch_t;

struct turn {
  uv_check_t check;
  napi_env env;
  napi_ref resource;
  napi_async_context context;
  pwatch_t **ready;
  size_t n, cap;
};

/* The poll phase: only notes the handle as ready; on_check calls it. */
static void on_ready(uv_poll_t *p, int status, int events) {
  pwatch_t *pw = (pwatch_t *)p->data;
  if (pw->w.closed) return;
  int ev = status < 0 ? status : events;
  if (pw->queued) {
    /* Polled twice in one turn (libuv polls again when its event array was full): an error wins. */
    if (pw->events >= 0) pw->events = ev < 0 ? ev : (pw->events | ev);
    return;
  }
  turn_t *t = pw->turn;
  if (t->n == t->cap) {
    size_t cap = t->cap == 0 ? 64 : t->cap * 2;
    pwatch_t **r = (pwatch_t **)realloc(t->ready, cap * sizeof *r);
    if (r == NULL) {
      /* Cannot defer: deliver now, alone, as the header's poll callback does. */
      on_poll(p, status, events);
      return;
    }
    t->ready = r;
    t->cap = cap;
  }
  pw->queued = 1;
  pw->events = ev;
  pw->w.owners++;
  t->ready[t->n++] = pw;
}

/* Right after the poll phase: every ready handle's onEvent, in the order they became ready,
 * inside one callback scope (its close runs the ticks and microtasks queued by all of them). */
static void on_check(uv_check_t *c) {
  turn_t *t = (turn_t *)c->data;
  if (t->n == 0) return;
  napi_env env = t->env;
  napi_handle_scope hs;
  napi_callback_scope cs;
  napi_value resource, recv;
  /* If a scope cannot be opened, this turn's events are not delivered (!ok below). That is safe
   * because it cannot happen while the process serves: Node's napi_open_handle_scope and
   * napi_open_callback_scope fail only for a null env or result pointer (src/js_native_api_v8.cc,
   * src/node_api.cc check nothing else, not even a stopping environment), napi_get_global does not
   * fail, and the resource is held by a strong reference (turn_new). The one state in which a
   * callback is not run is the environment's teardown (can_call_into_js false: napi_call_function
   * then returns an error and calls nothing). Only the proxy's and the gateway's main threads load
   * this add-on (no worker thread does), so that is the process exiting, and the kernel then
   * closes every descriptor, the client's and the backend's: no connection stays open unjudged. */
  int scoped = napi_open_handle_scope(env, &hs) == napi_ok;
  int ok = scoped && napi_get_reference_value(env, t->resource, &resource) == napi_ok &&
           napi_get_global(env, &recv) == napi_ok &&
           napi_open_callback_scope(env, resource, t->context, &cs) == napi_ok;
  /* The poll phase is over: nothing joins the list while it is delivered. A handle closed by
   * an earlier callback of this turn is skipped. */
  for (size_t i = 0; i < t->n; i++) {
    pwatch_t *pw = t->ready[i];
    pw->queued = 0;
    if (ok && !pw->w.closed) {
      napi_value cb, arg, result;
      if (napi_get_reference_value(env, pw->w.callback, &cb) == napi_ok && cb != NULL &&
          napi_create_int32(env, pw->events, &arg) == napi_ok &&
          napi_call_function(env, recv, cb, 1, &arg, &result) == napi_pending_exception) {
        napi_value err;
        if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
      }
    }
    release(&pw->w);
  }
  t->n = 0;
  if (ok) napi_close_callback_scope(env, cs);
  if (scoped) napi_close_handle_scope(env, hs);
}

static void turn_closed(uv_handle_t *h) {
  turn_t *t = (turn_t *)h->data;
  free(t->ready);
  free(t);
}

/* The environment is going away: the check handle stops; handles still listed are released. */
static void turn_cleanup(void *arg) {
  turn_t *t = (turn_t *)arg;
  for (size_t i = 0; i < t->n; i++) release(&t->ready[i]->w);
  t->n = 0;
  napi_delete_reference(t->env, t->resource);
  napi_async_destroy(t->env, t->context);
  uv_check_stop(&t->check);
  uv_close((uv_handle_t *)&t->check, turn_closed);
}

/* The environment's turn: a check handle that does not keep the loop alive. */
static turn_t *turn_new(napi_env env) {
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) return NULL;
  turn_t *t = (turn_t *)calloc(1, sizeof *t);
  if (t == NULL) return NULL;
  napi_value resource, name;
  if (napi_create_object(env, &resource) != napi_ok ||
      napi_create_string_utf8(env, "membrane.proxy-io", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_reference(env, resource, 1, &t->resource) != napi_ok) {
    free(t);
    return NULL;
  }
  if (napi_async_init(env, resource, name, &t->context) != napi_ok) {
    napi_delete_reference(env, t->resource);
    free(t);
    return NULL;
  }
  t->env = env;
  uv_check_init(loop, &t->check);
  t->check.data = t;
  uv_check_start(&t->check, on_check);
  uv_unref((uv_handle_t *)&t->check);
  napi_add_env_cleanup_hook(env, turn_cleanup, t);
  return t;
}

static napi_value op_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  napi_valuetype t;
  turn_t *turn = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&turn) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function)
    return usage(env, "open(fd: int >= 0, onEvent: function)");
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL)
    return usage(env, "open: no event loop");
  int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return num(env, -errno);
  pwatch_t *pw = (pwatch_t *)calloc(1, sizeof *pw);
  if (pw == NULL) {
    close(dup_fd);
    return num(env, -ENOMEM);
  }
  watch_t *w = &pw->w;
  int r = uv_poll_init(loop, &w->poll, dup_fd);
  if (r != 0) {
    close(dup_fd);
    free(pw);
    return num(env, r);
  }
  pw->turn = turn;
  return watch_external(env, w, dup_fd, argv[1], "membrane.proxy-io", "open: out of memory");
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
  int r = events == 0 ? uv_poll_stop(&w->poll) : uv_poll_start(&w->poll, events, on_ready);
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
  turn_t *turn = turn_new(env);
  if (turn == NULL) return usage(env, "cannot start: no event loop or out of memory");
  static const struct {
    const char *name;
    napi_callback fn;
  } ops[] = {{"open", op_open},         {"interest", op_interest}, {"read", op_read},
             {"write", op_write},       {"shutdown", op_shutdown}, {"close", op_close}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    napi_value fn;
    napi_create_function(env, ops[i].name, NAPI_AUTO_LENGTH, ops[i].fn, turn, &fn);
    napi_set_named_property(env, exports, ops[i].name, fn);
  }
  napi_value eagain;
  napi_create_int32(env, -EAGAIN, &eagain);
  napi_set_named_property(env, exports, "EAGAIN", eagain);
  return exports;
}
