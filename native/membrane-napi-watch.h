/*
 * One fd watched on Node's own event loop, shared by the socket I/O add-ons
 * (membrane-proxy-io.c, membrane-dns-io.c): a uv_poll handle that calls a JS callback
 * with the poll's events, its memory owned by the poll and the JS external together,
 * closed poll first (it unregisters the fd from epoll at once), then the fd.
 *
 * Define WATCH_USAGE_CODE (the error code of a misuse, e.g. "PROXY_IO_USAGE") before
 * including it. Header-only and static: each add-on is one translation unit.
 */
#ifndef MEMBRANE_NAPI_WATCH_H
#define MEMBRANE_NAPI_WATCH_H

#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#ifndef WATCH_USAGE_CODE
#error "define WATCH_USAGE_CODE before including membrane-napi-watch.h"
#endif

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  int fd;
  int closed;
  /* Owners of this memory: the poll handle (until its close callback) and the JS external. */
  int owners;
} watch_t;

static void release(watch_t *w) {
  if (--w->owners == 0) free(w);
}

static void on_closed(uv_handle_t *h) { release((watch_t *)h->data); }

static void on_poll(uv_poll_t *p, int status, int events) {
  watch_t *w = (watch_t *)p->data;
  if (w->closed) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, arg, result;
  if (napi_get_reference_value(env, w->callback, &cb) == napi_ok && cb != NULL &&
      napi_get_global(env, &recv) == napi_ok &&
      napi_create_int32(env, status < 0 ? status : events, &arg) == napi_ok) {
    if (napi_make_callback(env, w->context, recv, cb, 1, &arg, &result) == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

/* Stops watching and closes the duplicate: the poll first (it unregisters the fd from epoll at
 * once), then the fd, so the number cannot be reused while still registered. */
static void shut_io(watch_t *w) {
  if (w->closed) return;
  w->closed = 1;
  uv_close((uv_handle_t *)&w->poll, on_closed);
  close(w->fd);
  w->fd = -1;
}

static void shut(watch_t *w) {
  if (w->closed) return;
  napi_delete_reference(w->env, w->callback);
  napi_async_destroy(w->env, w->context);
  shut_io(w);
}

/* The callback's reference keeps the caller's objects (and so this external) alive until
 * close(): an external collected while open means the environment is being torn down, so only
 * the descriptor and the poll are released, not the JS-side reference and async context. */
static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  watch_t *w = (watch_t *)data;
  shut_io(w);
  release(w);
}

static napi_value num(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

static napi_value usage(napi_env env, const char *msg) {
  napi_throw_type_error(env, WATCH_USAGE_CODE, msg);
  return NULL;
}

static watch_t *handle_of(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return (watch_t *)p;
}

/* A watch whose poll was just initialised on `fd`, handed to JavaScript: owned by the poll and the
 * returned external together, `callback` referenced, its async context named `resource`. If any
 * of that fails the watch is shut (poll and fd closed, memory freed by the poll's close) and a
 * usage error `oom` thrown: NULL returned. Both add-ons open their watches this one way. */
static napi_value watch_external(napi_env env, watch_t *w, int fd, napi_value callback,
                                 const char *resource, const char *oom) {
  w->poll.data = w;
  w->env = env;
  w->fd = fd;
  w->owners = 2;
  napi_value res, name, ext;
  napi_create_object(env, &res);
  napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, callback, 1, &w->callback) != napi_ok ||
      napi_async_init(env, res, name, &w->context) != napi_ok ||
      napi_create_external(env, w, finalize, NULL, &ext) != napi_ok) {
    w->owners = 1; /* no external: only the poll handle owns it */
    if (w->callback != NULL) napi_delete_reference(env, w->callback);
    shut_io(w);
    return usage(env, oom);
  }
  return ext;
}

#endif
