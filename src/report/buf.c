#define _GNU_SOURCE
#include "buf.h"

#include "../common/hs_path.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int hs_root_fd = -1;

int hs_fs_open(const char *path, int flags, mode_t mode) { return hs_path_open(hs_root_fd, path, flags, mode); }

ssize_t hs_fs_readlink(const char *path, char *buf, size_t len) {
  return hs_path_readlink(hs_root_fd, path, buf, len);
}

int hs_fs_rename(const char *from, const char *to) { return hs_path_rename(hs_root_fd, from, to); }

int hs_fs_unlink(const char *path) { return hs_path_unlink(hs_root_fd, path); }

FILE *hs_fs_fopen_read(const char *path) {
  if (!hs_path_via(hs_root_fd, path)) return fopen(path, "re");
  int fd = hs_fs_open(path, O_RDONLY | O_CLOEXEC, 0);
  FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
  if (!f && fd >= 0) close(fd);
  return f;
}

static int reserve(struct hs_buf *b, size_t more) {
  if (b->len + more + 1 <= b->cap) return 0;
  size_t nc = b->cap ? b->cap : 4096;
  while (nc < b->len + more + 1) nc *= 2;
  char *ns = realloc(b->s, nc);
  if (!ns) return -1;
  b->s = ns;
  b->cap = nc;
  return 0;
}

void hs_buf_printf(struct hs_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || reserve(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void hs_buf_json_str(struct hs_buf *b, const char *s) {
  if (!s) {
    hs_buf_printf(b, "null");
    return;
  }
  if (reserve(b, strlen(s) * 6 + 2)) return;
  b->s[b->len++] = '"';
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      b->s[b->len++] = '\\';
      b->s[b->len++] = (char)*p;
    } else if (*p < 0x20) {
      b->len += (size_t)sprintf(b->s + b->len, "\\u%04x", *p);
    } else {
      b->s[b->len++] = (char)*p;
    }
  }
  b->s[b->len++] = '"';
  b->s[b->len] = 0;
}

void hs_buf_free(struct hs_buf *b) {
  free(b->s);
  b->s = NULL;
  b->len = b->cap = 0;
}
