/* Threads with the smallest stacks the program may ask for: glibc carves
 * static TLS out of the requested size, so an agent with a large static TLS
 * would make these pthread_create calls fail (tests/threads.sh). Each thread
 * allocates, so the agent's per-thread state is taken and handed on. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *work(void *arg) {
  for (int i = 0; i < 100; i++) free(malloc(16 + (size_t)i));
  return arg;
}

int main(void) {
  size_t sizes[] = {PTHREAD_STACK_MIN, 2 * PTHREAD_STACK_MIN, 65536};
  for (int round = 0; round < 50; round++)
    for (int i = 0; i < 3; i++) {
      pthread_attr_t at;
      pthread_attr_init(&at);
      pthread_attr_setstacksize(&at, sizes[i]);
      pthread_t t;
      int r = pthread_create(&t, &at, work, NULL);
      if (r) {
        printf("pthread_create with a %zu-byte stack: error %d\n", sizes[i], r);
        return 1;
      }
      pthread_join(t, NULL);
      pthread_attr_destroy(&at);
    }
  puts("all threads created");
  return 0;
}
