/* A growable string buffer with JSON escaping, for the report writers. */
#ifndef HS_BUF_H
#define HS_BUF_H
#include <stddef.h>
struct hs_buf {
  char *s;
  size_t len, cap;
};
void hs_buf_printf(struct hs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hs_buf_json_str(struct hs_buf *b, const char *s); /* quoted, or null */
void hs_buf_free(struct hs_buf *b);
#endif
