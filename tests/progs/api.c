/* The in-program API, with and without the agent. Prints what it got. */
#include <stdio.h>
#include <stdlib.h>

#include "heapscope.h"

void *volatile sink;
__attribute__((noinline)) void leak(size_t n) {
  sink = malloc(n);
  sink = NULL;
}

int main(void) {
  void *kept = malloc(4000);
  void *lost = malloc(300);
  printf("active=%d\n", heapscope_active());
  printf("ignore=%d\n", heapscope_ignore(lost));
  printf("ignore_bad=%d\n", heapscope_ignore((char *)kept + 1));
  lost = NULL;
  leak(1234);
  printf("check=%d\n", heapscope_leak_check());
  fflush(stdout);
  free(kept);
  return 0;
}
