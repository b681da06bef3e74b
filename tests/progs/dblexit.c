/* Two threads call exit() at the same moment (servers do: a signal-handling
 * thread and a worker that fails). glibc hands each exit handler to one of
 * them; the one that did not get the report's found the list empty and ended
 * the process while the other was writing the report: every run lost it.
 * argv[1] threads in all (default 2) call exit; 1000 blocks are lost
 * (valgrind: all definitely; a block's uninitialized bytes may hold a stale
 * pointer to another, which makes that one indirectly lost); exits with 4. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static pthread_barrier_t b;
void *volatile sink;
static void *t(void *a) { (void)a; pthread_barrier_wait(&b); exit(4); }
int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2;
  for (int i = 0; i < 1000; i++) { sink = malloc(100 + i); }  // 1000 lost blocks
  sink = 0;
  pthread_barrier_init(&b, NULL, (unsigned)n);
  for (int i = 1; i < n; i++) { pthread_t th; pthread_create(&th, NULL, t, NULL); }
  pthread_barrier_wait(&b);
  exit(4);
}
