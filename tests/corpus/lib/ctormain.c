/* See ctorlib.c. Without tracking from the process's first allocation the
 * registry's nodes are unknown to the check, and the program blocks only
 * they point to are reported definitely lost. */
#include <stdlib.h>
#include <string.h>

void registry_add(void *p);
void *volatile sink;

__attribute__((noinline)) static void leak(void) {
  void **lost = malloc(2 * sizeof *lost); /* LEAK(definitely_lost) */
  lost[0] = malloc(64);
  lost[1] = NULL;
  sink = lost;
}

int main(void) {
  for (int i = 0; i < 5; i++) registry_add(strdup("kept through the library's registry"));
  leak();
  sink = NULL;
  return 0;
}
