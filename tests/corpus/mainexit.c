/* main ends with pthread_exit and the process runs on in a worker, which
 * leaks and returns; the process exits when the last thread does. Once the
 * main thread has ended, /proc/PID/maps reads empty and the main thread
 * stays listed as a zombie: the report crashed (no symbolizer), and the
 * check waited for the zombie to stop and scanned its dead stack. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

void *volatile sink;

__attribute__((noinline)) void leak_after_main(void) {
  sink = malloc(555); /* LEAK(definitely_lost) */
  sink = NULL;
}
static void *worker(void *a) {
  (void)a;
  usleep(100000); /* main has ended by now */
  leak_after_main();
  return NULL;
}
int main(void) {
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  pthread_detach(t);
  pthread_exit(NULL);
}
