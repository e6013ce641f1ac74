/*
 * The responder's output (native/membrane-fanotify.c): a bounded queue of
 * report lines drained to stdout without ever blocking (a verdict must never
 * wait on the agent reading), and the JSON string encoding of raw bytes.
 * Included once, by membrane-fanotify.c.
 */
#ifndef MEMBRANE_FANOTIFY_OUT_H
#define MEMBRANE_FANOTIFY_OUT_H
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define OUTCAP (1 << 20)

static char out[OUTCAP];
static size_t out_head, out_len;
/* Reports dropped because the queue was full (the agent reads too slowly). */
static unsigned long long lost;

/* Appends a report to the bounded queue, or counts it lost. */
static void emit(const char *s, size_t n) {
  if (out_len + n > OUTCAP) {
    lost++;
    return;
  }
  for (size_t i = 0; i < n; i++) out[(out_head + out_len + i) % OUTCAP] = s[i];
  out_len += n;
}

static void flush_out(void) {
  while (out_len > 0) {
    size_t start = out_head, n = out_len;
    if (start + n > OUTCAP) n = OUTCAP - start;
    ssize_t w = write(1, out + start, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) return;
    if (w <= 0) exit(0); /* the agent is gone: closing the fanotify fd allows everything pending */
    out_head = (out_head + (size_t)w) % OUTCAP;
    out_len -= (size_t)w;
  }
}

/* A JSON string of raw bytes: printable ASCII as is (quote escaped), every other byte as
 * the text \xNN and a backslash as \\, so a hostile name (newline, non-UTF-8) stays one field. */
static size_t jstr(char *d, size_t cap, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  if (o + 1 < cap) d[o++] = '"';
  for (size_t i = 0; i < n && o + 8 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"') {
      d[o++] = '\\', d[o++] = '"';
    } else if (c == '\\') {
      d[o++] = '\\', d[o++] = '\\', d[o++] = '\\', d[o++] = '\\';
    } else if (c >= 0x20 && c < 0x7f) {
      d[o++] = (char)c;
    } else {
      d[o++] = '\\', d[o++] = '\\', d[o++] = 'x', d[o++] = hex[c >> 4], d[o++] = hex[c & 15];
    }
  }
  if (o + 1 < cap) d[o++] = '"';
  return o;
}

#endif
