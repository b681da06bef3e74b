/* The exit check's cost: N blocks of 128 bytes (default 8 million: 1 GiB),
 * all reachable through one global list, then exit. */
#include <stdlib.h>

struct node {
  struct node *next;
  char pad[120];
};
struct node *head;

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 8000000;
  for (long i = 0; i < n; i++) {
    struct node *x = malloc(sizeof *x);
    x->next = head;
    head = x;
  }
  return 0;
}
