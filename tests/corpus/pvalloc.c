/* pvalloc, which valgrind does not support (it aborts the program), so the
 * expected numbers are written here instead: NOVALGRIND.
 * EXPECT(definitely_lost 70 1) EXPECT(indirectly_lost 0 0) EXPECT(possibly_lost 0 0) */
#include <malloc.h>
#include <stdlib.h>

void *volatile sink;
__attribute__((noinline)) void leak_pvalloc(void) {
  sink = pvalloc(70); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void no_leak(void) {
  void *p = pvalloc(5000);
  sink = p;
  free(p);
  sink = NULL;
}
int main(void) {
  leak_pvalloc();
  no_leak();
  return 0;
}
