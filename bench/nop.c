/* The cheapest possible malloc interposer, a baseline for sample mode: each
 * entry point jumps through a pointer to glibc's own function, as
 * heapscope's hooks do, and does nothing else. What it costs is the price
 * of being an LD_PRELOAD interposer at all (an extra call hop a malloc and
 * a free), which no sampling agent loaded this way can go below. */
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static void *(*volatile real_malloc)(size_t) = __libc_malloc;
static void (*volatile real_free)(void *) = __libc_free;
static void *(*volatile real_calloc)(size_t, size_t) = __libc_calloc;
static void *(*volatile real_realloc)(void *, size_t) = __libc_realloc;

void *malloc(size_t n) { return real_malloc(n); }
void free(void *p) { real_free(p); }
void *calloc(size_t n, size_t m) { return real_calloc(n, m); }
void *realloc(void *p, size_t n) { return real_realloc(p, n); }
