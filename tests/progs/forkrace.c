/* fork() while other threads are inside the agent: two threads allocate
 * from C++-free code while one of them keeps unloading and reloading a
 * library (each dlclose empties the unwinder's rule cache, so captures keep
 * computing rules, under the unwinder's lock, for a long while); the main
 * thread forks again and again, and every child allocates (a capture, which
 * needs that lock) before it exits. The agent used to leave the lock held in
 * the child when the fork came while another thread held it: the child spun
 * forever. A child forked in the middle of the other thread's dlopen finds
 * the dynamic loader's list lock held for good, or its state half changed:
 * it must neither wait for it nor load a library (it died in ld.so).
 * Prints "forked N ok N". */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;
static const char *lib = "libz.so.1";
void *volatile sink;

__attribute__((noinline)) static void *alloc_at(int d, size_t n) {
  if (d == 0) return malloc(n);
  void *p = alloc_at(d - 1, n + 1);
  __asm__ volatile("" : "+r"(p));
  return p;
}

static void *churn(void *arg) {
  int reload = arg != NULL;
  for (unsigned i = 0; !atomic_load(&stop); i++) {
    if (reload) {
      void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
      if (h) dlclose(h);
    }
    free(alloc_at((int)(i % 24), 32));
  }
  return NULL;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 200;
  if (argc > 2) lib = argv[2]; /* one nothing else loads: every dlopen maps it, every dlclose unmaps it */
  pthread_t t[2];
  pthread_create(&t[0], NULL, churn, (void *)1);
  pthread_create(&t[1], NULL, churn, NULL);
  int ok = 0;
  for (int r = 0; r < rounds; r++) {
    pid_t p = fork();
    if (p == 0) {
      for (int k = 0; k < 8; k++) sink = alloc_at(k * 3, 64);
      _exit(0);
    }
    int st = 0;
    if (p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
  }
  atomic_store(&stop, 1);
  pthread_join(t[0], NULL);
  pthread_join(t[1], NULL);
  printf("forked %d ok %d\n", rounds, ok);
  return 0;
}
