/* Loads tests/progs/deepbind_lib.c with RTLD_DEEPBIND (argv[1]), mixes
 * blocks between its allocator and the program's, leaks one block through
 * it, and prints which which() the plugin bound to: the agent must not
 * change that, and must see the plugin's allocations from the first of its
 * blocks the program frees. With argv[2] "own", no block crosses: the
 * program allocates 20,000 blocks of its own, then the plugin leaks 200
 * bytes inside (plugin_leak), which the agent must see too. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *which(void) { return "the program's"; }

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_DEEPBIND);
  if (!h) {
    printf("%s\n", dlerror());
    return 1;
  }
  const char *(*pw)(void) = (const char *(*)(void))dlsym(h, "plugin_which");
  void *(*pa)(size_t) = (void *(*)(size_t))dlsym(h, "plugin_alloc");
  void (*pf)(void *) = (void (*)(void *))dlsym(h, "plugin_free");
  if (argc > 2 && !strcmp(argv[2], "own")) {
    void (*pl)(void) = (void (*)(void))dlsym(h, "plugin_leak");
    for (int i = 0; i < 20000; i++) {
      void *volatile p = malloc(32); /* volatile: gcc drops a free(malloc(n)) */
      free(p);
    }
    pl();
    printf("plugin binds to %s which()\n", pw());
    return 0;
  }
  for (int i = 0; i < 100; i++) {
    free(pa(64));  /* the plugin's block, freed by the program */
    pf(malloc(64)); /* the program's block, freed by the plugin */
  }
  void *volatile lost = pa(100);
  lost = NULL;
  printf("plugin binds to %s which()\n", pw());
  return lost ? 1 : 0;
}
