/* Still reachable memory: globals holding blocks, a list hanging off a
 * global, and static-storage pointers in a function. None is a leak. */
#include <stdlib.h>

struct item {
  struct item *next;
  char data[100];
};
static struct item *cache;
void *table[16];

__attribute__((noinline)) void fill(void) {
  for (int i = 0; i < 20; i++) {
    struct item *x = malloc(sizeof *x);
    x->next = cache;
    cache = x;
  }
  for (int i = 0; i < 16; i++) table[i] = calloc(1, 64);
  static char *once;
  once = malloc(500);
  (void)once;
}

int main(void) {
  fill();
  return 0;
}
