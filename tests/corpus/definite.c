#define _GNU_SOURCE
/* Every C allocation entry point, each leaked from its own function. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile sink; /* defeats dead-store elimination; cleared after use */

__attribute__((noinline)) void leak_small(void) {
  for (int i = 0; i < 10; i++) sink = malloc(100); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void leak_calloc(void) {
  sink = calloc(4, 25); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void leak_realloc(void) {
  char *p = malloc(10);
  sink = p;
  sink = realloc(p, 300); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void leak_reallocarray(void) {
  sink = reallocarray(NULL, 7, 11); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void leak_posix_memalign(void) {
  void *p;
  if (posix_memalign(&p, 64, 130) == 0) sink = p; /* LEAK(definitely_lost) */
  p = NULL;
  sink = NULL;
}
__attribute__((noinline)) void leak_aligned_alloc(void) {
  sink = aligned_alloc(32, 96); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void leak_memalign(void) {
  sink = memalign(128, 200); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void leak_valloc(void) {
  sink = valloc(50); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void leak_strdup(void) {
  sink = strdup("a string that is never freed"); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void leak_asprintf(void) {
  char *s;
  if (asprintf(&s, "%d-%s", 42, "asprintf") > 0) sink = s; /* LEAK(definitely_lost) */
  s = NULL;
  sink = NULL;
}
__attribute__((noinline)) void leak_getline(void) {
  FILE *f = fopen("/proc/self/cmdline", "r");
  char *line = NULL;
  size_t cap = 0;
  if (f && getline(&line, &cap, f) >= 0) sink = line; /* LEAK(definitely_lost) */
  if (f) fclose(f);
  line = NULL;
  sink = NULL;
}
__attribute__((noinline)) void no_leak(void) {
  char *p = malloc(1000);
  sink = p;
  p = realloc(p, 2000);
  sink = p;
  free(p);
  sink = NULL;
  size_t u = 0;
  p = malloc(33);
  u = malloc_usable_size(p);
  free(p);
  if (u < 33) abort();
}

int main(void) {
  leak_small();
  leak_calloc();
  leak_realloc();
  leak_reallocarray();
  leak_posix_memalign();
  leak_aligned_alloc();
  leak_memalign();
  leak_valloc();
  leak_strdup();
  leak_asprintf();
  leak_getline();
  no_leak();
  return 0;
}
