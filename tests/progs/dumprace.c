/* Thread dumps while other threads load and unload libraries: the dump's
 * signal handler used to unwind with libunwind, which takes the dynamic
 * linker's lock, and a thread interrupted inside dlopen or dlclose holds it:
 * the handlers and the dumping thread then waited for each other forever.
 * Takes DUMPS dumps through heapscope_threads_check (the goroutine
 * endpoint's and the exit report's dump), then exits while the threads are
 * still at it. Prints "done" and returns 3. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../include/heapscope.h"

/* libz is loaded already (the agent needs it): three dlopens in four only
 * count a reference; the fourth loads and unloads libgmp for real. */
static const char *libs[] = {"libz.so.1", "libz.so.1", "libgmp.so.10", "libz.so.1"};

static void *worker(void *arg) {
  unsigned s = (unsigned)(long)arg * 7919u;
  for (;;) {
    s = s * 1103515245u + 12345u;
    void *h = dlopen(libs[(s >> 12) & 3], RTLD_NOW);
    free(malloc(16 + (s >> 20) % 500));
    if (h) dlclose(h);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int dumps = argc > 1 ? atoi(argv[1]) : 200;
  unsigned long mark = heapscope_threads_mark(); /* the workers are new since */
  pthread_t t;
  for (long i = 0; i < 3; i++) pthread_create(&t, NULL, worker, (void *)(i + 1));
  char report[4096];
  for (int i = 0; i < dumps; i++) heapscope_threads_check(mark, 0, report, sizeof report);
  puts("done");
  exit(3);
}
