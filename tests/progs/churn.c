/* N threads created and joined one after another, each allocating once;
 * prints the process's resident memory (KiB) at the end. The agent's
 * per-thread state must be handed from ended threads to new ones, not grow
 * with the number of threads ever created. usage: churn N */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *volatile sink;
static void *work(void *a) {
  sink = malloc(16);
  free(sink);
  return a;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  for (int i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, work, NULL) == 0) pthread_join(t, NULL);
  }
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long rss = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) rss = atol(line + 6);
  if (f) fclose(f);
  printf("%ld\n", rss);
  return 0;
}
