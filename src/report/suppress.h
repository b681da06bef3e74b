/* Suppression files in LeakSanitizer's format: one `leak:PATTERN` per line,
 * `#` comments. A pattern matches a frame's function, file or module; `*`
 * is a wildcard, `^` and `$` anchor, otherwise it matches a substring. */
#ifndef HS_SUPPRESS_H
#define HS_SUPPRESS_H
#include <stddef.h>
#include <stdint.h>

struct hs_supp {
  char *pattern;
  char *source; /* file:line, or "default" */
  int is_thread; /* thread:PATTERN (the threads report) */
  uint64_t hits_bytes, hits_blocks;
};
struct hs_supp_list {
  struct hs_supp *v;
  size_t n, cap;
};

/* Loads one file. Returns 0, or -1 with a one-line message in err. */
int hs_supp_load(struct hs_supp_list *l, const char *path, char *err, size_t errlen);
/* Parses suppression text (what hs_supp_load reads); path names it in errors. */
int hs_supp_parse(struct hs_supp_list *l, const char *text, size_t len, const char *path, char *err,
                  size_t errlen);
/* Loads every file of a ':'-separated list. */
int hs_supp_load_list(struct hs_supp_list *l, const char *paths, char *err, size_t errlen);
void hs_supp_add(struct hs_supp_list *l, const char *pattern, const char *source, int is_thread);
void hs_supp_add_defaults(struct hs_supp_list *l);
int hs_supp_match(const char *pattern, const char *s);
void hs_supp_free(struct hs_supp_list *l);
#endif
