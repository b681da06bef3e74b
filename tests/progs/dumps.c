/* Two heap dumps through the API, with growth between them: -base must
 * show exactly the growth. */
#include <stdio.h>
#include <stdlib.h>

#include "heapscope.h"

void *volatile keep[1000];
__attribute__((noinline)) void grow_before(void) {
  for (int i = 0; i < 100; i++) keep[i] = malloc(1000);
}
__attribute__((noinline)) void grow_between(void) {
  for (int i = 100; i < 300; i++) keep[i] = malloc(5000);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  grow_before();
  int a = heapscope_dump(argv[1]);
  grow_between();
  int b = heapscope_dump(argv[2]);
  printf("%d %d\n", a, b);
  return 0;
}
