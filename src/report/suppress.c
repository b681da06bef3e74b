#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "suppress.h"

/* Runtime-internal blocks that are not the program's leaks. glibc's
 * per-thread dynamic TLS vector (DTV) is allocated by the dynamic linker when
 * a thread is created and is only reachable through an interior pointer in
 * the thread descriptor: valgrind counts it as possibly lost. */
static const char *const default_patterns[] = {
    "_dl_allocate_tls",
    /* glibc's dynamic TLS blocks (__tls_get_addr), which also appear when a
     * library the agent loaded runs its destructor at exit */
    "tls_get_addr_tail",
    /* the segments of glibc's table for _dl_find_object, which dlopen
     * grows: ld.so keeps a pointer into each, past its header, so the check
     * found the block "possibly lost" after a program's first dlopen (the
     * agent's own dlopen of libdw used to make it, and flag it as its own) */
    "_dl_find_object_update",
};

void hs_supp_add(struct hs_supp_list *l, const char *pattern, const char *source, int is_thread) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 16;
    struct hs_supp *nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) return;
    l->v = nv;
    l->cap = nc;
  }
  struct hs_supp *s = &l->v[l->n++];
  memset(s, 0, sizeof *s);
  s->pattern = strdup(pattern);
  s->source = strdup(source);
  s->is_thread = is_thread;
}

void hs_supp_add_defaults(struct hs_supp_list *l) {
  for (size_t i = 0; i < sizeof default_patterns / sizeof *default_patterns; i++)
    hs_supp_add(l, default_patterns[i], "default", 0);
}

int hs_supp_parse(struct hs_supp_list *l, const char *text, size_t len, const char *path, char *err,
                  size_t errlen) {
  int lineno = 0, rc = 0;
  for (size_t off = 0; off < len && !rc;) {
    size_t n0 = 0;
    while (off + n0 < len && text[off + n0] != '\n') n0++;
    char line[4096];
    size_t keep = n0 < sizeof line - 1 ? n0 : sizeof line - 1;
    memcpy(line, text + off, keep);
    line[keep] = 0;
    off += n0 + 1;
    lineno++;
    if (memchr(line, 0, keep)) {
      snprintf(err, errlen, "%s:%d: a NUL byte — this is not a text file", path, lineno);
      rc = -1;
      break;
    }
    char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    if (!*s || *s == '#') continue;
    char src[4200];
    snprintf(src, sizeof src, "%s:%d", path, lineno);
    if (!strncmp(s, "leak:", 5) && s[5]) {
      hs_supp_add(l, s + 5, src, 0);
    } else if (!strncmp(s, "thread:", 7) && s[7]) {
      hs_supp_add(l, s + 7, src, 1);
    } else {
      snprintf(err, errlen, "%s:%d: not a suppression: '%.80s' — expected leak:PATTERN or thread:PATTERN",
               path, lineno, s);
      rc = -1;
      break;
    }
  }
  return rc;
}

int hs_supp_load(struct hs_supp_list *l, const char *path, char *err, size_t errlen) {
  FILE *f = hs_fs_fopen_read(path);
  if (!f) {
    snprintf(err, errlen, "cannot read suppression file %s: %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  char *text = malloc(cap);
  size_t n;
  while (text && (n = fread(text + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      char *t = realloc(text, cap *= 2);
      if (!t) {
        free(text);
        text = NULL;
      } else {
        text = t;
      }
    }
  }
  int bad = ferror(f);
  fclose(f);
  if (!text || bad) {
    free(text);
    snprintf(err, errlen, "cannot read suppression file %s", path);
    return -1;
  }
  int rc = hs_supp_parse(l, text, len, path, err, errlen);
  free(text);
  return rc;
}

int hs_supp_load_list(struct hs_supp_list *l, const char *paths, char *err, size_t errlen) {
  if (!paths) return 0;
  char *copy = strdup(paths), *save = NULL;
  int rc = 0;
  for (char *p = strtok_r(copy, ":", &save); p && !rc; p = strtok_r(NULL, ":", &save))
    rc = hs_supp_load(l, p, err, errlen);
  free(copy);
  return rc;
}

/* '*' wildcard match of pattern [p, pe) against all of [s, se): the
 * classic greedy match that backtracks only to the last star, O(|p|·|s|)
 * at worst (no exponential blow-up on patterns like "*a*a*a*b"). */
static int glob(const char *p, const char *pe, const char *s, const char *se) {
  const char *star = NULL, *mark = NULL;
  while (s < se) {
    if (p < pe && *p == '*') {
      star = ++p;
      mark = s;
    } else if (p < pe && *p == *s) {
      p++;
      s++;
    } else if (star) {
      p = star;
      s = ++mark;
    } else {
      return 0;
    }
  }
  while (p < pe && *p == '*') p++;
  return p == pe;
}

int hs_supp_match(const char *pattern, const char *s) {
  if (!pattern || !s) return 0;
  size_t pl = strlen(pattern);
  int start = pattern[0] == '^', end = pl > 1 && pattern[pl - 1] == '$';
  /* An unanchored end behaves as if the pattern went on with '*'. */
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "%s%.*s%s", start ? "" : "*", (int)(pl - (size_t)start - (size_t)end),
                   pattern + start, end ? "" : "*");
  if (n < 0 || (size_t)n >= sizeof buf) return 0;
  return glob(buf, buf + n, s, s + strlen(s));
}

void hs_supp_free(struct hs_supp_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].pattern);
    free(l->v[i].source);
  }
  free(l->v);
  memset(l, 0, sizeof *l);
}
