/* A shared library whose constructor allocates, as C++ libraries' static
 * objects do (apt's configuration tree, libstdc++'s emergency pool): the
 * dynamic linker runs it before the preloaded agent's constructor. The
 * program hangs its own blocks off this registry, and leaks one that holds a
 * second (definite + indirect). Built by tests/corpus.sh with ctormain.c. */
#include <stdlib.h>

struct node {
  struct node *next;
  char data[40];
};
static struct node *registry; /* the library's only root */

__attribute__((constructor)) static void registry_init(void) {
  for (int i = 0; i < 3; i++) {
    struct node *n = malloc(sizeof *n);
    n->next = registry;
    registry = n;
  }
}

void registry_add(void *p) {
  struct node *n = malloc(sizeof *n);
  n->next = registry->next;
  registry->next = n;
  *(void **)n->data = p;
}
