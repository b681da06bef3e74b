/* Threads cancelled (deferred cancellation) while they allocate through a
 * library just loaded: their first capture there reads the library's unwind
 * tables with libdw, and open() is a cancellation point. A thread cancelled
 * there held the unwinder's rule-miss lock for good, and every thread after
 * it waited forever (every run hung). Built with tests/progs/dlswap.c
 * -DFRAME as the libraries (argv[1], argv[2], loaded in turn). Prints
 * "done" and returns 0. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *(*lib_alloc)(int);

static void *worker(void *arg) {
  (void)arg;
  for (unsigned i = 0;; i++) {
    free(lib_alloc(16 + (int)(i % 100)));
    if (i % 1000 == 999) pthread_testcancel(); /* the program's own cancellation point */
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  for (int round = 0; round < 40; round++) {
    void *h = dlopen(argv[1 + round % 2], RTLD_NOW);
    if (!h) {
      fprintf(stderr, "%s\n", dlerror());
      return 1;
    }
    lib_alloc = (void *(*)(int))dlsym(h, "lib_alloc");
    pthread_t t[3];
    for (long i = 0; i < 3; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < 3; i++) pthread_cancel(t[i]);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    free(lib_alloc(8)); /* a capture after them, through the same library */
    dlclose(h);
  }
  puts("done");
  return 0;
}
