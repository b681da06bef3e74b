/* A server that leaks file descriptors: it leaks a block, then opens
 * /dev/null until no descriptor is left, and exits like that. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile keep;

__attribute__((noinline)) static void leak(void) {
  char *p = malloc(555);
  memset(p, 1, 555);
  keep = p;
  keep = 0;
}

int main(void) {
  leak();
  int n = 0;
  while (open("/dev/null", O_RDONLY) >= 0) n++;
  printf("out of descriptors after %s\n", n > 10 ? "many" : "few");
  return 0;
}
