/* A malloc that is not glibc's, preloaded before the agent: blocks 8 bytes
 * apart and 8-byte aligned, as jemalloc's smallest classes are, from a
 * static arena; free keeps the memory. Two blocks then start in one 32-byte
 * unit of the agent's shadow map, and some are not 16-byte aligned: the
 * table's overflow holds them (src/agent/table.c). */
#include <stddef.h>
#include <string.h>

static char arena[16 << 20] __attribute__((aligned(64)));
static size_t used;

void *malloc(size_t n) {
  size_t sz = n ? (n + 7) & ~(size_t)7 : 8;
  size_t off = __atomic_fetch_add(&used, sz, __ATOMIC_RELAXED);
  return off + sz <= sizeof arena ? arena + off : NULL;
}
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b) {
  size_t n;
  return __builtin_mul_overflow(a, b, &n) ? NULL : malloc(n); /* the arena is never reused: still zero */
}
void *realloc(void *p, size_t n) {
  char *q = malloc(n);
  if (q && p) {
    size_t room = (size_t)(arena + sizeof arena - (char *)p);
    memcpy(q, p, n < room ? n : room);
  }
  return q;
}
